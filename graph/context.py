"""The run context: handles a node needs, rebuilt on every run and never checkpointed.

Each tool is a protocol, so unit tests hand in fakes and the service hands in the real things.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from agents.schemas import TextDesign, TextLayer, TextPlan
from kernel.models import SIZES, AdCopy, ArtifactRef, Box, Placement, SceneAnalysis


class ArtifactStore(Protocol):
    async def put_image(self, image: Image.Image, *, lossy: bool = False) -> ArtifactRef: ...
    async def open_image(self, ref: ArtifactRef) -> Image.Image: ...


class StepCache(Protocol):
    """Results of deterministic steps by the hash of what they read (checkpoints.step_cache)."""

    async def get(self, key: str) -> ArtifactRef | None: ...
    async def put(self, key: str, ref: ArtifactRef) -> None: ...


class Segmenter(Protocol):
    name: str
    version: str
    """What its matte depends on beyond the photo (the model file, the resolution): part of a cache key."""

    async def segment(self, photo: Image.Image) -> Image.Image:
        """Return the product matte: mode "L", same size as `photo`, 255 = product."""
        ...


Progress = Callable[[float, str], None]
"""How far a long step is (0-1) and what it is doing, e.g. (0.4, "diffusion step 4/10")."""


class Backdrop(Protocol):
    name: str
    restyles: bool
    """Whether `generate` takes an `init_image` (img2img)."""

    async def generate(
        self,
        *,
        size: tuple[int, int],
        prompt: str,
        product_palette: list[str],
        seed: int,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
        **init: Any,
    ) -> Image.Image:
        """Return an RGB image of `size` to stand the product in front of.

        A backend that restyles takes `init_image=` and `strength=` in `init`. A long backend reports
        `progress` and, when `cancelled()` turns true, stops by raising `kernel.errors.StepCancelled`.
        """
        ...


class Compositor(Protocol):
    async def compose(
        self, *, background: Image.Image, cutout: Image.Image, text_position: str
    ) -> tuple[Image.Image, Placement]: ...


class Analyzer(Protocol):
    name: str

    async def analyze(
        self,
        *,
        scene: Image.Image,
        placement: Placement,
        fallback: Callable[[str, str], None] | None = None,
    ) -> SceneAnalysis:
        """`fallback(part, reason)`: a part the backend could not make, and measured instead."""
        ...


class Planner(Protocol):
    async def plan(
        self,
        *,
        copy: AdCopy,
        analysis: SceneAnalysis,
        canvas: tuple[int, int],
        text_position: str,
        text_area: Box,
    ) -> TextPlan: ...


class Designer(Protocol):
    async def design(
        self, *, plan: TextPlan, analysis: SceneAnalysis, canvas: tuple[int, int], font: str | None
    ) -> TextDesign: ...


class Developer(Protocol):
    async def code(self, *, plan: TextPlan, design: TextDesign, canvas: tuple[int, int]) -> TextLayer: ...


class Renderer(Protocol):
    async def render_layer(self, html: str, size: tuple[int, int]) -> tuple[Image.Image, dict[str, Box]]:
        """Render `html` to a transparent RGBA image of `size`, with the box of each `[data-role]` element."""
        ...


@dataclass(frozen=True)
class AdContext:
    artifacts: ArtifactStore
    segmenter: Segmenter
    backdrop: Backdrop
    compositor: Compositor
    analyzer: Analyzer
    planner: Planner
    designer: Designer
    developer: Developer
    renderer: Renderer
    models: Any = None
    """The GPU model runtime and its clip scorer, when GPU backends are configured (else None)."""
    cache: StepCache | None = None
    """Where `segment` keeps cut-outs by photo and backend (None: every run segments)."""
    scope: str = "local"
    """Whose cached results this run may reuse: the job's tenant (set per run by the job service), so one
    tenant's timings never tell it what another uploaded."""


_default_context: AdContext | None = None


def set_default_context(ctx: AdContext | None) -> None:
    """For hosts that cannot pass a context per run (the LangGraph dev server behind Studio)."""
    global _default_context
    _default_context = ctx


def ad_context(runtime_context: AdContext | None) -> AdContext:
    if runtime_context is not None:
        return runtime_context
    if _default_context is None:
        raise RuntimeError("the ad graph was run without a context: pass context=AdContext(...)")
    return _default_context


def canvas_size(size: str) -> tuple[int, int]:
    return SIZES[size]
