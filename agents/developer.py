"""Rule-based developer: the design as a self-contained HTML page for a transparent text layer.

Every line is placed where the design measured it: lines are joined with `<br>` and never re-wrapped
(`white-space: nowrap`), blocks are positioned absolutely and sized by their content, so Chromium's boxes
can be checked against the design's. No scripts, no URLs; the CSP forbids anything but inline styles.
"""

from __future__ import annotations

import html
import re

from kernel.errors import AdgraphError

from .color import HEX_RE, hex_to_rgb
from .schemas import BlockStyle, ButtonStyle, Scrim, TextDesign, TextLayer, TextPlan

CSP = "default-src 'none'; style-src 'unsafe-inline'"
_FAMILY_UNSAFE = re.compile(r"[^\w \-.]", re.UNICODE)
_SHADOW_SAFE = re.compile(r"^[0-9a-zA-Z#(),.%\s-]*$")


class RuleDeveloper:
    """`Developer` by rule: one absolutely positioned `<div data-role=…>` per block, a scrim behind them."""

    async def code(self, *, plan: TextPlan, design: TextDesign, canvas: tuple[int, int]) -> TextLayer:
        return TextLayer(html=render_html(plan, design, canvas))


def render_html(plan: TextPlan, design: TextDesign, canvas: tuple[int, int]) -> str:
    width, height = canvas
    korean = any("\uac00" <= ch <= "\ud7a3" for b in design.blocks for line in b.lines for ch in line)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"ko" if korean else "en"}">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f'<meta name="viewport" content="width={width}, height={height}">',
        "<style>",
        f"html, body {{ margin: 0; padding: 0; width: {width}px; height: {height}px; "
        "background: transparent; overflow: hidden; }",
        "body { position: relative; }",
        ".block { position: absolute; margin: 0; padding: 0; width: max-content; white-space: nowrap; "
        "word-break: keep-all; font-kerning: normal; font-style: normal; -webkit-text-size-adjust: none; }",
        "</style>",
        "</head>",
        "<body>",
    ]
    if design.scrim is not None:
        parts.append(_scrim(design.scrim))
    for block in design.blocks:
        button = design.button if block.role == "cta" else None
        shadow = design.text_shadow if block.role != "cta" else None
        parts.append(_block(block, plan.align, canvas, button, shadow))
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _scrim(scrim: Scrim) -> str:
    r, g, b = hex_to_rgb(_colour(scrim.color, "scrim.color"))
    opacity = min(1.0, max(0.0, float(scrim.opacity)))
    box = scrim.box
    style = _style(
        position="absolute",
        left=f"{box.x}px",
        top=f"{box.y}px",
        width=f"{box.w}px",
        height=f"{box.h}px",
        background=f"rgba({r}, {g}, {b}, {opacity:.3f})",
        border_radius=f"{max(0, scrim.radius)}px",
    )
    return f'<div class="scrim" aria-hidden="true" style="{style}"></div>'


def _block(
    block: BlockStyle, align: str, canvas: tuple[int, int], button: ButtonStyle | None, shadow: str | None
) -> str:
    box = block.box
    line_px = round(block.line_height * block.font_size)
    props: dict[str, str] = {"top": f"{box.y}px"}
    # anchor on the side the text is aligned to, so any sub-pixel difference in width grows away from it
    if align == "center":
        props |= {"left": f"{box.x + box.w / 2:g}px", "transform": "translateX(-50%)"}
    elif align == "right":
        props |= {"right": f"{canvas[0] - box.right}px"}
    else:
        props |= {"left": f"{box.x}px"}
    props |= {
        "font_family": f"'{_family(block.font_family)}', sans-serif",
        "font_weight": str(int(block.font_weight)),
        "font_size": f"{int(block.font_size)}px",
        "line_height": f"{line_px}px",
        "color": _colour(block.color, f"{block.role}.color"),
        "text_align": align if align in ("left", "center", "right") else "left",
    }
    if button is not None:
        props |= {
            "background": _colour(button.background, "button.background"),
            "color": _colour(button.color, "button.color"),
            "padding": f"{int(button.padding_y)}px {int(button.padding_x)}px",
            "border_radius": f"{int(button.radius)}px",
        }
    if shadow and _SHADOW_SAFE.match(shadow) and "url" not in shadow.lower():
        props["text_shadow"] = shadow
    text = "<br>".join(html.escape(line, quote=True) for line in block.lines)
    return f'<div class="block" data-role="{block.role}" style="{_style(**props)}">{text}</div>'


def _style(**props: str) -> str:
    css = "; ".join(f"{k.replace('_', '-')}: {v}" for k, v in props.items())
    return html.escape(css, quote=True)


def _family(name: str) -> str:
    """A font family name safe inside a quoted CSS string."""
    return _FAMILY_UNSAFE.sub("", name).strip() or "sans-serif"


def _colour(value: str, field: str) -> str:
    if not HEX_RE.match(value):
        raise AdgraphError("INVALID_INPUT", f"{field} {value!r} is not a #rrggbb colour", field=field)
    return value.lower()
