"""Value types shared by the graphs, nodes and agents: small, frozen, JSON-friendly, no pixels."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SIZES: dict[str, tuple[int, int]] = {
    "1080x1080": (1080, 1080),
    "1200x628": (1200, 628),
    "1080x1920": (1080, 1920),
}
TextPosition = Literal["auto", "top", "center", "bottom"]
TEXT_POSITIONS: tuple[str, ...] = ("auto", "top", "center", "bottom")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArtifactRef(Frozen):
    """A file in the content-addressed artifact store, named by the sha256 of its bytes."""

    id: str = Field(pattern=r"^[0-9a-f]{64}$")
    mime: str
    bytes: int
    width: int | None = None
    height: int | None = None


class Box(Frozen):
    """An axis-aligned rectangle in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    @property
    def area(self) -> int:
        return max(0, self.w) * max(0, self.h)

    def intersection(self, other: Box) -> int:
        w = min(self.right, other.right) - max(self.x, other.x)
        h = min(self.bottom, other.bottom) - max(self.y, other.y)
        return max(0, w) * max(0, h)

    def inside(self, width: int, height: int) -> bool:
        return self.x >= 0 and self.y >= 0 and self.right <= width and self.bottom <= height


class AdCopy(Frozen):
    """The user's words, any language. Empty subline or cta means the block is left out."""

    headline: str
    subline: str = ""
    cta: str = ""


class Placement(Frozen):
    """Where `composite` put the cut-out: the photo scaled by `scale`, its top-left at (x, y)."""

    scale: float
    x: int
    y: int
    product_box: Box
    """Bounding box of the product's matte on the canvas."""
    text_area: Box
    """The part of the canvas composite left free for the text."""


class Region(Frozen):
    """A candidate area for text, with what it looks like underneath."""

    name: str
    box: Box
    emptiness: float
    """1 = flat, 0 = busy (from the local gradient energy)."""
    luminance: float
    """Mean WCAG relative luminance, 0..1."""
    luminance_range: tuple[float, float]
    """2nd and 98th percentile of relative luminance: what text colours must contrast with."""
    color: str
    """Mean colour, #rrggbb."""


class SceneAnalysis(Frozen):
    product_box: Box
    regions: list[Region]
    """Free regions, best (emptiest, largest) first. None overlaps the product."""
    dominant: str
    """The product's dominant colour, #rrggbb."""
    accent: str
    """The product's most saturated distinct colour, #rrggbb."""
    palette: list[str]
    brightness: list[list[float]]
    """Mean relative luminance on a coarse grid (rows of columns) over the whole scene."""


class FontFace(Frozen):
    """One installed font file, as fontconfig reports it."""

    family: str
    style: str
    weight: int
    """CSS weight: 400 regular, 700 bold, 800 extra bold."""
    file: str
    hangul: bool
    """Whether the font covers Hangul."""
