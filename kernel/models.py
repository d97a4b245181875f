"""Value types shared by the graphs, nodes and agents: small, frozen, JSON-friendly, no pixels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

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

    def contains(self, inner: Box) -> bool:
        return (
            self.x <= inner.x
            and self.y <= inner.y
            and inner.right <= self.right
            and inner.bottom <= self.bottom
        )

    def iou(self, other: Box) -> float:
        """Intersection over union of the two areas (0 when both are empty)."""
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def overlap(self, other: Box) -> float:
        """The share of the smaller box that the two have in common (0 when one is empty)."""
        smaller = min(self.area, other.area)
        return self.intersection(other) / smaller if smaller else 0.0

    def expand(self, by: int) -> Box:
        """`by` pixels larger on every side (smaller for a negative `by`)."""
        return Box(x=self.x - by, y=self.y - by, w=self.w + 2 * by, h=self.h + 2 * by)

    def clip(self, bounds: Box) -> Box:
        """The part of this box inside `bounds` (an empty box where they do not meet)."""
        x0, y0 = max(self.x, bounds.x), max(self.y, bounds.y)
        x1, y1 = min(self.right, bounds.right), min(self.bottom, bounds.bottom)
        return Box(x=x0, y=y0, w=max(0, x1 - x0), h=max(0, y1 - y0))

    def union(self, other: Box) -> Box:
        """The smallest box around both."""
        return Box.around([self, other])

    @staticmethod
    def around(boxes: Iterable[Box]) -> Box:
        """The smallest box around all of `boxes` (ValueError if there are none)."""
        boxes = list(boxes)
        if not boxes:
            raise ValueError("no boxes to put a box around")
        x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
        x1, y1 = max(b.right for b in boxes), max(b.bottom for b in boxes)
        return Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0)

    def avoid(self, obstacle: Box, *, gap: int = 0, keep: Box | None = None) -> Box | None:
        """The largest part of this box on one side of `obstacle` (plus `gap`); the box itself if they do
        not touch. With `keep`, only cuts that still contain `keep` are allowed (retried without the gap
        if none does). None if no cut works."""
        if self.intersection(obstacle) == 0:
            return self
        x0, y0, x1, y1 = self.x, self.y, self.right, self.bottom
        cuts = [
            (x0, y0, x1, min(y1, obstacle.y - gap)),  # above
            (x0, max(y0, obstacle.bottom + gap), x1, y1),  # below
            (x0, y0, min(x1, obstacle.x - gap), y1),  # left
            (max(x0, obstacle.right + gap), y0, x1, y1),  # right
        ]
        options = [Box(x=a, y=b, w=c - a, h=d - b) for a, b, c, d in cuts if c > a and d > b]
        options = [o for o in options if o.intersection(obstacle) == 0 and (keep is None or o.contains(keep))]
        if not options and keep is not None and gap:
            return self.avoid(obstacle, gap=0, keep=keep)
        return max(options, key=lambda o: o.area, default=None)


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


class FontCatalog(Protocol):
    """The installed fonts, and how wide a text is set in one of them (the designers measure with it)."""

    def faces(self) -> list[FontFace]: ...
    def text_width(self, text: str, family: str, weight: int, size: int) -> float:
        """Advance width in pixels of `text` set in that face at `size` px."""
        ...


def artifact_refs(value: object) -> list[ArtifactRef]:
    """Every `ArtifactRef` inside a state value (models, dicts, lists), in order, each once."""
    found: dict[str, ArtifactRef] = {}

    def walk(v: object) -> None:
        if isinstance(v, ArtifactRef):
            found.setdefault(v.id, v)
        elif isinstance(v, BaseModel):
            for item in v.__dict__.values():
                walk(item)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)

    walk(value)
    return list(found.values())
