"""State of the ad workflow: small and typed; images are `ArtifactRef`s into the artifact store."""

from __future__ import annotations

from typing import NotRequired, TypedDict

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
    restyle: NotRequired[float | None]
    """Img2img strength (0-1] for a backend that restyles (FLUX): the background is generated from a first
    composition of the product on the studio backdrop, so light and shadows fit it. None: from the prompt."""


class AdState(AdInput, total=False):
    cutout: ArtifactRef
    """RGBA, same size as the photo; alpha is the product matte (written by `segment`)."""
    segment_backend: str
    """The backend that made the matte: u2netp or birefnet."""
    background: ArtifactRef
    """The backdrop at canvas size (written by `background`)."""
    background_backend: str
    """The backend that made the backdrop: studio or flux."""
    placement: Placement
    scene: ArtifactRef
    """Product on its background: the step-1 image (written by `composite`)."""
    analysis: SceneAnalysis
    analyze_backend: str
    """The backend that analysed the scene: stats or qwen2vl."""
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
