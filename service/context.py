"""Building the real run context (embedded backends) from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from agents.llm import EMBEDDED_ALIAS, EmbeddedLLMServer, LLMConfig, Usage, open_chat_model
from agents.rules import RuleDesigner, RuleDeveloper, RulePlanner
from checkpoints.artifacts import FileArtifactStore
from gpu_runtime.u2netp import U2NetPSegmenter
from graph.context import AdContext, Renderer
from graph.errors import AdgraphError
from nodes.backends.compose import StudioCompositor
from nodes.backends.fonts import FontconfigCatalog
from nodes.backends.stats import StatsAnalyzer
from nodes.backends.studio import StudioBackdrop
from service.browser import ChromiumRenderer
from service.settings import Settings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


def make_renderer(settings: Settings) -> ChromiumRenderer:
    return ChromiumRenderer(
        settings.chromium_path, pages=settings.render_pages, timeout_s=settings.render_timeout_s
    )


def llm_config(settings: Settings, base_url: str | None = None) -> LLMConfig:
    """The chat model's settings; `base_url` is the embedded server's when none is configured."""
    url = settings.llm_base_url or base_url
    if url is None:
        raise ValueError("no LLM base URL")
    model = settings.llm_model or (EMBEDDED_ALIAS if not settings.llm_base_url else None)
    if model is None:
        raise AdgraphError(
            "INVALID_INPUT",
            f"ADGRAPH_LLM_BASE_URL is {url} but ADGRAPH_LLM_MODEL is unset; name the model to use there",
            field="llm_model",
        )
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "none"
    return LLMConfig(
        base_url=url,
        model=model,
        api_key=key,
        timeout_s=settings.llm_timeout_s,
        max_tokens=settings.llm_max_tokens,
        max_retries=1 if settings.llm_base_url else 0,
        legacy_max_tokens=not settings.llm_base_url,
    )


@asynccontextmanager
async def open_llm(settings: Settings) -> AsyncIterator[BaseChatModel | None]:
    """The agents' chat model if `settings.agents` is "llm" (else None): the configured server, or the
    embedded SmolLM2 server started here and stopped on exit."""
    if settings.agents != "llm":
        yield None
    elif settings.llm_base_url:
        async with open_chat_model(llm_config(settings)) as chat:
            yield chat
    else:
        server = EmbeddedLLMServer(threads=settings.llm_threads, start_timeout_s=settings.llm_start_timeout_s)
        async with server, open_chat_model(llm_config(settings, server.base_url)) as chat:
            yield chat


def make_ad_context(settings: Settings, renderer: Renderer, chat: BaseChatModel | None = None) -> AdContext:
    """The embedded defaults: u2netp, studio backdrop, stats analysis; rule agents, or LLM agents over
    `chat` that fall back to the rules part by part."""
    fonts = FontconfigCatalog()
    if chat is None:
        planner, designer, developer = RulePlanner(), RuleDesigner(fonts), RuleDeveloper()
    else:
        from agents.llm_ad import LLMDesigner, LLMDeveloper, LLMPlanner

        usage = Usage()
        planner, designer, developer = (
            LLMPlanner(chat, usage),
            LLMDesigner(chat, fonts, usage),
            LLMDeveloper(chat, usage),
        )
    return AdContext(
        artifacts=FileArtifactStore(settings.artifacts_dir),
        segmenter=U2NetPSegmenter(threads=settings.onnx_threads),
        backdrop=StudioBackdrop(),
        compositor=StudioCompositor(),
        analyzer=StatsAnalyzer(),
        planner=planner,
        designer=designer,
        developer=developer,
        renderer=renderer,
    )


def chat_of(ctx: AdContext) -> BaseChatModel | None:
    """The chat model the ad context's LLM agents use (None with rule agents): the homepage's agents share
    it, so one process runs one LLM server."""
    return getattr(ctx.planner, "chat", None)


@asynccontextmanager
async def ad_context(settings: Settings) -> AsyncIterator[AdContext]:
    """The embedded-default context with a warm Chromium (and the LLM, if asked for), closed on exit."""
    async with make_renderer(settings) as renderer, open_llm(settings) as chat:
        yield make_ad_context(settings, renderer, chat)
