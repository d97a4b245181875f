"""State of the ad workflow: small and typed; images are `ArtifactRef`s into the artifact store."""

from __future__ import annotations

from typing import TypedDict

from agents.schemas import TextDesign, TextPlan
from graph.models import AdCopy, ArtifactRef, Box, Placement, SceneAnalysis, TextPosition

AD_NODES: tuple[str, ...] = (
    "segment",
    "background",
    "composite",
    "analyze",
    "plan",
    "design",
    "code",
    "render",
)


class AdInput(TypedDict):
    product_image: ArtifactRef
    """The user's photo as uploaded."""
    copy: AdCopy
    background_prompt: str
    size: str
    """One of SIZES, e.g. "1080x1080"."""
    seed: int
    text_position: TextPosition
    font: str | None
    """An installed font family, or None to let the designer choose."""


class AdState(AdInput, total=False):
    cutout: ArtifactRef
    """RGBA, same size as the photo; alpha is the product matte (written by `segment`)."""
    background: ArtifactRef
    """The backdrop at canvas size (written by `background`)."""
    placement: Placement
    scene: ArtifactRef
    """Product on its background: the step-1 image (written by `composite`)."""
    analysis: SceneAnalysis
    text_plan: TextPlan
    design: TextDesign
    text_layer_html: str
    """Self-contained HTML of the transparent text layer (written by `code`)."""
    text_layer: ArtifactRef
    """The rendered transparent text layer, RGBA (written by `render`)."""
    ad: ArtifactRef
    """The final ad (written by `render`)."""
    text_boxes: dict[str, Box]
    """Where each text block landed, as Chromium laid it out."""
