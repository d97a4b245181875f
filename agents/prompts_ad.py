"""What the ad workflow's LLM agents (`agents.llm_ad`) say to the model: the system prompt, one request per
choice, and the repair notes their checks send back. Wording lives here only."""

from __future__ import annotations

from collections.abc import Iterable

SYSTEM = "You are an ad designer. Answer only by calling the function, with short values."

# -- planner: the alignment ---------------------------------------------------------------------------


def layout_request(headline: str, box: tuple[int, int], canvas: tuple[int, int], text_position: str) -> str:
    """Ask for the alignment of the text in its `box` (width, height) on the canvas."""
    w, h = box
    shape = "a tall column beside the product" if h > w else "a wide band"
    asked = f" The shop asked for the text at the {text_position}." if text_position != "auto" else ""
    return (
        f"Headline: {headline}\nText area: {w}x{h} px, {shape}, "
        f"in a {canvas[0]}x{canvas[1]} ad.{asked} Choose the alignment of the text."
    )


def valign_repair(text_position: str) -> str:
    return f"valign must be {text_position!r}: the shop asked for the text at the {text_position}"


# -- designer: the font and the button colour ---------------------------------------------------------

_CHOICES = {"font": "a font", "button": "the button colour"}


def style_request(
    headline: str, *, families: list[str] | None, colours: list[str] | None, asked: Iterable[str]
) -> str:
    """Ask for the choices named in `asked` ("font", "button"), offering `families` and `colours`."""
    lines = [f"Headline: {headline}"]
    if families is not None:
        lines.append(f"Fonts: {', '.join(families)}.")
    if colours is not None:
        lines.append(f"Product colours: {', '.join(colours)}. The button text is white or black.")
    lines.append("Choose " + " and ".join(_CHOICES[k] for k in asked))
    return "\n".join(lines)


def button_repair(colour: str, contrast: float) -> str:
    return f"button {colour} gives its text only {contrast:.1f}:1 contrast, under 4.5; choose another"


# -- developer: the shadow and the button's corners ---------------------------------------------------


def finish_request(headline: str, text_colour: str, *, scrim: bool, button: str | None) -> str:
    """Ask for the text shadow and the button corners of a layer with this headline and colours."""
    return (
        f"Headline: {headline}\nText colour {text_colour}"
        + (", on a translucent panel" if scrim else "")
        + (f", button colour {button}" if button else "")
        + ". Choose the text shadow and the button corners."
    )
