"""Rule-based planner: which free region the text goes in, the box it may fill, and the blocks in order."""

from __future__ import annotations

from typing import Literal

from kernel.errors import AdgraphError
from kernel.models import AdCopy, Box, Region, SceneAnalysis

from .schemas import Role, TextBlock, TextPlan

MARGIN = 0.05
"""Distance of the text from the canvas's edges, as a fraction of its short side (half that from the product).

Regions are clipped to that safe area rather than inset by it: the reserved text area already keeps its own
margin from the edges, and insetting it again would waste a tenth of the canvas."""
RESERVED_REGION = "text_area"
"""The region `composite` reserved for the requested text position (the analyzer names it so)."""


class RulePlanner:
    """`Planner` by rule: the reserved text area (or the best free region), inset, never over the product."""

    async def plan(
        self,
        *,
        copy: AdCopy,
        analysis: SceneAnalysis,
        canvas: tuple[int, int],
        text_position: str,
        text_area: Box,
    ) -> TextPlan:
        width, height = canvas
        blocks = copy_blocks(copy)
        name, region_box = choose_region(analysis, text_position, text_area, canvas)
        margin = round(MARGIN * min(width, height))
        box: Box | None = clip(region_box, inset(Box(x=0, y=0, w=width, h=height), margin))
        if box is not None:
            box = avoid(box, inset(analysis.product_box, -(margin // 2)))
        if box is None or box.w <= 0 or box.h <= 0:
            raise AdgraphError(
                "INVALID_INPUT",
                f"no room for text beside the product in this {width}x{height} ad (region {name!r}); "
                "choose another text_position or a smaller product",
                field="text_position",
            )
        side_column = box.w < 0.6 * width and box.h > 0.5 * height
        return TextPlan(
            region=name,
            box=box,
            align="left" if side_column else "center",
            valign=_valign(text_position),
            blocks=blocks,
        )


def _valign(text_position: str) -> Literal["top", "center", "bottom"]:
    if text_position == "top":
        return "top"
    if text_position == "bottom":
        return "bottom"
    return "center"


def copy_blocks(copy: AdCopy) -> list[TextBlock]:
    """The user's copy as blocks in reading order; empty subline / cta are left out."""
    headline = _clean(copy.headline)
    if not headline:
        raise AdgraphError("INVALID_INPUT", "headline is empty; give the ad a headline", field="headline")
    blocks = [TextBlock(role="headline", text=headline)]
    extra: tuple[tuple[Role, str], ...] = (("subline", copy.subline), ("cta", copy.cta))
    for role, text in extra:
        if _clean(text):
            blocks.append(TextBlock(role=role, text=_clean(text)))
    return blocks


def _clean(text: str) -> str:
    # keep the user's explicit line breaks; collapse other runs of whitespace
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines() if line.strip())


def choose_region(
    analysis: SceneAnalysis, text_position: str, text_area: Box, canvas: tuple[int, int]
) -> tuple[str, Box]:
    """The reserved text area if the analysis has it, else the best region on the asked-for side."""
    regions = analysis.regions
    for r in regions:
        if r.name == RESERVED_REGION:
            return r.name, r.box
    if not regions:
        return RESERVED_REGION, text_area
    height = canvas[1]

    def on_side(r: Region) -> bool:
        cy = r.box.y + r.box.h / 2
        return {"top": cy < height / 2, "bottom": cy > height / 2}.get(text_position, True)

    best = next((r for r in regions if on_side(r)), regions[0])
    return best.name, best.box


def inset(box: Box, by: int) -> Box:
    return Box(x=box.x + by, y=box.y + by, w=box.w - 2 * by, h=box.h - 2 * by)


def clip(box: Box, bounds: Box) -> Box:
    x0, y0 = max(box.x, bounds.x), max(box.y, bounds.y)
    x1, y1 = min(box.right, bounds.right), min(box.bottom, bounds.bottom)
    return Box(x=x0, y=y0, w=max(0, x1 - x0), h=max(0, y1 - y0))


def union(boxes: list[Box]) -> Box:
    x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
    x1, y1 = max(b.right for b in boxes), max(b.bottom for b in boxes)
    return Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0)


def contains(outer: Box, inner: Box) -> bool:
    return (
        outer.x <= inner.x
        and outer.y <= inner.y
        and inner.right <= outer.right
        and inner.bottom <= outer.bottom
    )


def avoid(box: Box, obstacle: Box, *, gap: int = 0, keep: Box | None = None) -> Box | None:
    """The largest part of `box` on one side of `obstacle` (plus `gap`); `box` itself if they don't touch.

    With `keep`, only cuts that still contain `keep` are allowed. None if no cut works.
    """
    if box.intersection(obstacle) == 0:
        return box
    x0, y0, x1, y1 = box.x, box.y, box.right, box.bottom
    cuts = [
        (x0, y0, x1, min(y1, obstacle.y - gap)),  # above
        (x0, max(y0, obstacle.bottom + gap), x1, y1),  # below
        (x0, y0, min(x1, obstacle.x - gap), y1),  # left
        (max(x0, obstacle.right + gap), y0, x1, y1),  # right
    ]
    options = [Box(x=a, y=b, w=c - a, h=d - b) for a, b, c, d in cuts if c > a and d > b]
    options = [o for o in options if o.intersection(obstacle) == 0 and (keep is None or contains(o, keep))]
    if not options and keep is not None and gap:
        return avoid(box, obstacle, gap=0, keep=keep)
    return max(options, key=lambda o: o.area, default=None)
