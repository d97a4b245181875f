"""Building the real run context from settings: the embedded backends, or the GPU ones around one runtime."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.llm import EMBEDDED_ALIAS, EmbeddedLLMServer, LLMConfig, Usage, open_chat_model
from agents.rules import RuleDesigner, RuleDeveloper, RulePlanner
from checkpoints.artifacts import FileArtifactStore
from gpu_runtime.birefnet import BiRefNetSegmenter
from gpu_runtime.clip import ClipScorer
from gpu_runtime.flux import FluxBackdrop, flux_defaults
from gpu_runtime.models import (
    BACKEND_SETTING,
    MODELS,
    NODE_BACKENDS,
    Choice,
    Located,
    choose,
    cuda_available,
    locate,
    torch_installed,
)
from gpu_runtime.qwen2vl import QwenAnalyzer
from graph.context import AdContext, Renderer
from kernel.errors import AdgraphError
from nodes.backends.chromium import ChromiumRenderer
from nodes.backends.compose import StudioCompositor
from nodes.backends.fonts import FontconfigCatalog
from nodes.backends.stats import StatsAnalyzer
from nodes.backends.studio import StudioBackdrop
from nodes.backends.u2netp import U2NetPSegmenter
from service.settings import Settings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


@dataclass
class GpuModels:
    """Which backend each node got and why, and the one model runtime serving the GPU ones."""

    choices: dict[str, Choice]
    located: dict[str, Located]
    runtime: Any = None
    """A `gpu_runtime.runtime.ModelRuntime`, or None when no GPU model is in use (torch never imported)."""
    clip: ClipScorer | None = None
    problems: dict[str, str] = field(default_factory=dict)

    def require_clip(self) -> ClipScorer:
        if self.clip is None:
            self.located["clip"].require()  # names the setting when the weights are missing
            raise AdgraphError(
                "MODEL_UNAVAILABLE", self.problems.get("clip", "the CLIP model is not loaded"), model="clip"
            )
        return self.clip

    def summary(self) -> dict[str, Any]:
        """For /v1/system: the backends and the runtime's residency, memory and counters."""
        return {
            "backends": {n: {"backend": c.backend, "reason": c.reason} for n, c in self.choices.items()},
            "runtime": self.runtime.stats() if self.runtime is not None else None,
        }

    async def close(self) -> None:
        if self.runtime is not None:
            await self.runtime.close()


def make_models(settings: Settings, *, for_jobs: bool = True, evaluations: bool = True) -> GpuModels:
    """Resolve each model's directory, choose each node's backend, and register the GPU models in one
    runtime. `for_jobs=False` (an API process whose jobs run in workers) keeps only the CLIP scorer;
    `evaluations=False` (the CLI, a worker) leaves CLIP out, so it costs nothing there."""
    located = {
        name: locate(info, getattr(settings, info.setting), settings.models_dir)
        for name, info in MODELS.items()
    }
    cuda = functools.cache(cuda_available)  # imports torch only when some weights are found
    # Without jobs there are no node backends to choose (the workers choose theirs).
    choices = (
        {
            node: choose(node, getattr(settings, BACKEND_SETTING[node]), located[gpu], cuda)
            for node, (_, gpu) in NODE_BACKENDS.items()
        }
        if for_jobs
        else {}
    )
    names = [c.backend for c in choices.values() if c.gpu]
    models = GpuModels(choices, located)
    if not evaluations:
        models.problems["clip"] = "this process runs no evaluations"
    elif located["clip"].found and torch_installed():
        names.append("clip")
    elif not located["clip"].found:
        models.problems["clip"] = located["clip"].source
    else:
        models.problems["clip"] = "torch is not installed (pip install 'adgraph[gpu]')"
    if not names:
        return models
    from gpu_runtime.loaders import model_spec, torch_dtype
    from gpu_runtime.runtime import ModelRuntime

    runtime = ModelRuntime(
        device=settings.gpu_device,
        budget_bytes=settings.gpu_memory_budget,
        reserve_bytes=settings.gpu_memory_reserve,
        host_budget_bytes=settings.gpu_host_budget,
        share=settings.gpu_processes,
    )
    dtype = torch_dtype(settings.gpu_dtype, str(runtime.device))
    for name in names:
        path = located[name].path
        assert path is not None
        runtime.register(model_spec(name, path, dtype))
    models.runtime = runtime
    if "clip" in names:
        models.clip = ClipScorer(runtime)
    return models


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


def make_ad_context(
    settings: Settings,
    renderer: Renderer,
    models: GpuModels | None = None,
    *,
    chat: BaseChatModel | None = None,
) -> AdContext:
    """The embedded defaults (u2netp, studio backdrop, stats analysis), with the GPU backend of each node
    that `models` chose; rule agents, or LLM agents over `chat` that fall back to the rules part by part."""
    gpu = {node: c.gpu for node, c in models.choices.items()} if models is not None else {}
    runtime = models.runtime if models is not None else None
    stats = StatsAnalyzer()
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
        segmenter=BiRefNetSegmenter(runtime, resolution=settings.birefnet_resolution)
        if gpu.get("segment")
        else U2NetPSegmenter(threads=settings.onnx_threads),
        backdrop=_flux(settings, runtime, models) if gpu.get("background") else StudioBackdrop(),
        compositor=StudioCompositor(),
        analyzer=QwenAnalyzer(runtime, stats, max_new_tokens=settings.qwen2vl_max_new_tokens)
        if gpu.get("analyze")
        else stats,
        planner=planner,
        designer=designer,
        developer=developer,
        renderer=renderer,
        models=models,
    )


def _flux(settings: Settings, runtime: Any, models: GpuModels | None) -> FluxBackdrop:
    """FLUX with the settings' steps and guidance, or the checkpoint's own (dev or schnell)."""
    assert models is not None and models.located["flux"].path is not None
    steps, guidance = flux_defaults(models.located["flux"].path)
    return FluxBackdrop(
        runtime,
        steps=settings.flux_steps or steps,
        guidance=guidance if settings.flux_guidance is None else settings.flux_guidance,
        resolution=settings.flux_resolution,
    )


def chat_of(ctx: AdContext) -> BaseChatModel | None:
    """The chat model the ad context's LLM agents use (None with rule agents): the homepage's agents share
    it, so one process runs one LLM server."""
    return getattr(ctx.planner, "chat", None)


@asynccontextmanager
async def ad_context(settings: Settings, *, evaluations: bool = True) -> AsyncIterator[AdContext]:
    """The run context with a warm Chromium, the model runtime and (if asked for) the LLM, all closed on
    exit. `evaluations`: also hold the CLIP scorer (the API's clip-score)."""
    models = make_models(settings, evaluations=evaluations)
    try:
        async with make_renderer(settings) as renderer, open_llm(settings) as chat:
            yield make_ad_context(settings, renderer, models, chat=chat)
    finally:
        await models.close()


# -- the runtime's state across processes ------------------------------------------------------------------
# With `adgraph serve --workers N` the models live in the worker processes, not in the API process that
# answers /v1/system and /metrics. Each worker writes its summary to a small file under the data dir every
# few seconds; the API reads the fresh ones. (Workers on other machines are not seen this way.)


def stats_dir(settings: Settings) -> Path:
    return settings.data_dir / "runtime"


async def publish_stats(models: GpuModels, settings: Settings, every_s: float = 2.0) -> None:
    """Write this process's model summary to the data dir every `every_s` until cancelled; remove it then."""
    path = stats_dir(settings) / f"worker-{socket.gethostname()}-{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        while True:
            doc = {"process": path.stem, "pid": os.getpid(), "at": time.time(), **models.summary()}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
            await asyncio.sleep(every_s)
    finally:
        path.unlink(missing_ok=True)


def read_stats(settings: Settings, max_age_s: float = 10.0) -> list[dict[str, Any]]:
    """The summaries workers published in the last `max_age_s` seconds (a dead worker's file goes stale)."""
    out = []
    now = time.time()
    for path in sorted(stats_dir(settings).glob("worker-*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # removed or replaced while read
        if now - doc.get("at", 0) <= max_age_s:
            out.append(doc)
    return out
