"""What the planner, designer and developer return. Every agent (rules or LLM) returns these, validated."""

from __future__ import annotations

from typing import Literal

from kernel.models import Box, Frozen

Role = Literal["headline", "subline", "cta"]


class TextBlock(Frozen):
    role: Role
    text: str


class TextPlan(Frozen):
    """What goes where: the blocks in reading order inside one free region of the scene."""

    region: str
    """Name of the `SceneAnalysis.regions` entry the text sits in."""
    box: Box
    """The area the blocks may fill (inside that region, never over the product)."""
    align: Literal["left", "center", "right"]
    valign: Literal["top", "center", "bottom"]
    blocks: list[TextBlock]


class BlockStyle(Frozen):
    role: Role
    font_family: str
    font_weight: int
    font_size: int
    """Pixels."""
    line_height: float
    """Multiple of the font size."""
    color: str
    """#rrggbb."""
    lines: list[str]
    """The text broken into lines that fit the box at this size (measured with the font file)."""
    box: Box
    """Where the block's lines go on the canvas."""
    contrast: float
    """Worst-case WCAG contrast of `color` against what lies under the text (scene, scrim or button)."""


class Scrim(Frozen):
    """A translucent panel behind the text, used when the scene alone cannot give 4.5:1."""

    color: str
    opacity: float
    box: Box
    radius: int


class ButtonStyle(Frozen):
    background: str
    color: str
    padding_x: int
    padding_y: int
    radius: int


class TextDesign(Frozen):
    blocks: list[BlockStyle]
    scrim: Scrim | None = None
    button: ButtonStyle | None = None
    """How the cta block is drawn, if there is one."""
    text_shadow: str | None = None
    """CSS text-shadow, decoration only: contrast never relies on it."""


class TextLayer(Frozen):
    html: str
    """A complete, self-contained HTML document: transparent page, no scripts, no external URLs."""
