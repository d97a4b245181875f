"""State of the ad workflow: small and typed; images are `ArtifactRef`s into the artifact store."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from agents.provenance import PartProvenance
from agents.schemas import TextDesign, TextPlan
from agents.site_schemas import DesignSystem, Profile, SiteChecks, SiteManifest, SitePlan
from kernel.models import AdCopy, ArtifactRef, Box, Placement, SceneAnalysis, TextPosition

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


HOMEPAGE_NODES: tuple[str, ...] = ("plan", "design", "code", "render")
SCREEN_WIDTHS: dict[str, int] = {"desktop": 1280, "mobile": 390}


class HomepageInput(TypedDict):
    profile: Profile
    images: list[ArtifactRef]
    """Photos for the hero and gallery (uploads or an ad job's output), in the user's order."""
    pages: list[str] | None
    """Pages the user asked for (PAGE_KINDS), or None to let the planner choose."""
    style: str | None
    """A style hint for the designer ("warm", "modern", "차분한 …"), or None."""


class HomepageState(HomepageInput, total=False):
    plan: SitePlan
    """Pages, sections and copy (written by `plan`)."""
    design: DesignSystem
    """Palette, type scale, spacing (written by `design`)."""
    site: SiteManifest
    """The site's files in the artifact store (written by `code`)."""
    screens: dict[str, ArtifactRef]
    """`<page>-desktop` / `<page>-mobile` → PNG screenshot (written by `render`)."""
    site_zip: ArtifactRef
    """The whole site as one zip (written by `render`)."""
    checks: SiteChecks
    """What the checks on the built site found (written by `code` and `render`)."""
    provenance: dict[str, PartProvenance]
    """Which agent produced each part ("plan", "design", "code") and whether it fell back to rules."""
