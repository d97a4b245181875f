"""Building the real run context (embedded backends) from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agents.rules import RuleDesigner, RuleDeveloper, RulePlanner
from checkpoints.artifacts import FileArtifactStore
from gpu_runtime.u2netp import U2NetPSegmenter
from graph.context import AdContext, Renderer
from nodes.backends.compose import StudioCompositor
from nodes.backends.fonts import FontconfigCatalog
from nodes.backends.stats import StatsAnalyzer
from nodes.backends.studio import StudioBackdrop
from service.browser import ChromiumRenderer
from service.settings import Settings


def make_renderer(settings: Settings) -> ChromiumRenderer:
    return ChromiumRenderer(
        settings.chromium_path, pages=settings.render_pages, timeout_s=settings.render_timeout_s
    )


def make_ad_context(settings: Settings, renderer: Renderer) -> AdContext:
    """The embedded defaults: u2netp, studio backdrop, stats analysis, rule agents."""
    return AdContext(
        artifacts=FileArtifactStore(settings.artifacts_dir),
        segmenter=U2NetPSegmenter(threads=settings.onnx_threads),
        backdrop=StudioBackdrop(),
        compositor=StudioCompositor(),
        analyzer=StatsAnalyzer(),
        planner=RulePlanner(),
        designer=RuleDesigner(FontconfigCatalog()),
        developer=RuleDeveloper(),
        renderer=renderer,
    )


@asynccontextmanager
async def ad_context(settings: Settings) -> AsyncIterator[AdContext]:
    """The embedded-default context with a warm Chromium, closed on exit."""
    async with make_renderer(settings) as renderer:
        yield make_ad_context(settings, renderer)
