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
        safe = Box(x=0, y=0, w=width, h=height).expand(-margin)
        box = region_box.clip(safe).avoid(analysis.product_box.expand(margin // 2))
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
