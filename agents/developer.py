"""Rule-based developer: the design as a self-contained HTML page for a transparent text layer.

Every line is placed where the design measured it: lines are joined with `<br>` and never re-wrapped
(`white-space: nowrap`), blocks are positioned absolutely and sized by their content, so Chromium's boxes
can be checked against the design's. No scripts, no URLs; the CSP forbids anything but inline styles.
"""

from __future__ import annotations

import re
from typing import Any

from kernel.color import HEX_RE, hex_to_rgb
from kernel.errors import AdgraphError
from kernel.script import has_hangul

from .schemas import BlockStyle, ButtonStyle, Scrim, TextDesign, TextLayer, TextPlan
from .templating import render

CSP = "default-src 'none'; style-src 'unsafe-inline'"
_FAMILY_UNSAFE = re.compile(r"[^\w \-.]", re.UNICODE)
_SHADOW_SAFE = re.compile(r"^[0-9a-zA-Z#(),.%\s-]*$")


class RuleDeveloper:
    """`Developer` by rule: one absolutely positioned `<div data-role=…>` per block, a scrim behind them."""

    async def code(self, *, plan: TextPlan, design: TextDesign, canvas: tuple[int, int]) -> TextLayer:
        return TextLayer(html=render_html(plan, design, canvas))


def render_html(plan: TextPlan, design: TextDesign, canvas: tuple[int, int]) -> str:
    width, height = canvas
    korean = any(has_hangul(line) for b in design.blocks for line in b.lines)
    scrim = None if design.scrim is None else _scrim(design.scrim)
    blocks = []
    for block in design.blocks:
        button = design.button if block.role == "cta" else None
        shadow = design.text_shadow if block.role != "cta" else None
        blocks.append(_block(block, canvas, button, shadow))
    return render(
        "ad_text_layer.html.j2",
        lang="ko" if korean else "en",
        csp=CSP,
        width=width,
        height=height,
        align=plan.align if plan.align in ("left", "center", "right") else "left",
        scrim=scrim,
        blocks=blocks,
    )


def _scrim(scrim: Scrim) -> dict[str, Any]:
    box = scrim.box
    return {
        "x": box.x,
        "y": box.y,
        "w": box.w,
        "h": box.h,
        "rgb": hex_to_rgb(_colour(scrim.color, "scrim.color")),
        "opacity": min(1.0, max(0.0, float(scrim.opacity))),
        "radius": max(0, scrim.radius),
    }


def _block(
    block: BlockStyle, canvas: tuple[int, int], button: ButtonStyle | None, shadow: str | None
) -> dict[str, Any]:
    """The block's CSS values, each checked or rebuilt from numbers; the template writes the properties."""
    box = block.box
    view: dict[str, Any] = {
        "role": block.role,
        "lines": block.lines,
        "top": box.y,
        "left": box.x,
        "center": f"{box.x + box.w / 2:g}",
        "right": canvas[0] - box.right,
        "family": _family(block.font_family),
        "weight": int(block.font_weight),
        "size": int(block.font_size),
        "line_height": round(block.line_height * block.font_size),
        "color": _colour(block.color, f"{block.role}.color"),
        "button": None,
        "shadow": shadow if shadow and _SHADOW_SAFE.match(shadow) and "url" not in shadow.lower() else None,
    }
    if button is not None:
        view["color"] = _colour(button.color, "button.color")
        view["button"] = {
            "background": _colour(button.background, "button.background"),
            "padding_y": int(button.padding_y),
            "padding_x": int(button.padding_x),
            "radius": int(button.radius),
        }
    return view


def _family(name: str) -> str:
    """A font family name safe inside a quoted CSS string."""
    return _FAMILY_UNSAFE.sub("", name).strip() or "sans-serif"


def _colour(value: str, field: str) -> str:
    if not HEX_RE.match(value):
        raise AdgraphError("INVALID_INPUT", f"{field} {value!r} is not a #rrggbb colour", field=field)
    return value.lower()
