"""The composition root: settings in, every real component out — the backend each node gets (the "auto"
policy), the model runtime, Chromium, the LLM, the run context of each workflow and the job service.

Every door (the API's lifespan, each CLI command, a worker, the Studio module) builds what it needs here
and nowhere else.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agents.llm import LLMConfig, Usage, open_chat_model
from agents.rules import RuleDesigner, RuleDeveloper, RulePlanner
from agents.site_rules import RuleSiteDesigner, RuleSiteDeveloper, RuleSitePlanner
from checkpoints.artifacts import FileArtifactStore
from checkpoints.blobs import open_artifact_store
from checkpoints.step_cache import FileStepCache
from gpu_runtime.birefnet import BiRefNetSegmenter
from gpu_runtime.clip import ClipScorer
from gpu_runtime.flux import FluxBackdrop, flux_defaults
from gpu_runtime.models import (
    MODELS,
    Located,
    cuda_available,
    env_name,
    locate,
    torch_installed,
)
from gpu_runtime.qwen2vl import QwenAnalyzer
from graph.context import AdContext, Renderer
from graph.homepage_context import HomepageContext, SiteRenderer
from kernel.errors import AdgraphError
from kernel.script import pictographs
from nodes.backends.chromium import ChromiumRenderer
from nodes.backends.compose import StudioCompositor
from nodes.backends.fonts import FontconfigCatalog
from nodes.backends.stats import StatsAnalyzer
from nodes.backends.studio import StudioBackdrop
from nodes.backends.u2netp import U2NetPSegmenter
from service.llm_server import EMBEDDED_ALIAS, EmbeddedLLMServer
from service.settings import Settings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

# -- which backend each node gets --------------------------------------------------------------------------

# node -> (embedded backend, GPU backend = the model's name)
NODE_BACKENDS: dict[str, tuple[str, str]] = {
    "segment": ("u2netp", "birefnet"),
    "background": ("studio", "flux"),
    "analyze": ("stats", "qwen2vl"),
}
MODEL_NODE = {gpu: node for node, (_, gpu) in NODE_BACKENDS.items()}
BACKEND_SETTING = {
    "segment": "segment_backend",
    "background": "background_backend",
    "analyze": "analyze_backend",
}


@dataclass(frozen=True)
class Choice:
    node: str
    backend: str
    reason: str

    @property
    def gpu(self) -> bool:
        return self.backend == NODE_BACKENDS[self.node][1]


def choose(node: str, requested: str, located: Located, cuda: Callable[[], bool] = cuda_available) -> Choice:
    """The backend for `node`: `auto` takes the GPU one when its weights and CUDA are both here; a
    backend named explicitly is taken as asked, and a GPU one that cannot load is MODEL_UNAVAILABLE."""
    embedded, gpu = NODE_BACKENDS[node]
    setting = env_name(BACKEND_SETTING[node])
    if requested not in ("auto", embedded, gpu):
        raise AdgraphError(
            "INVALID_INPUT",
            f"{setting}={requested!r}: choose auto, {embedded} or {gpu}",
            setting=setting,
        )
    if requested == embedded:
        return Choice(node, embedded, f"{setting}={embedded}")
    if requested == gpu:
        located.require()
        if not torch_installed():
            raise _no_torch(gpu)
        if missing := located.missing_packages():
            raise _no_packages(gpu, missing)
        return Choice(node, gpu, f"{setting}={gpu}")
    if not located.found:
        return Choice(node, embedded, f"{gpu} weights not found ({located.source})")
    if not torch_installed():
        return Choice(node, embedded, "torch is not installed (pip install 'adgraph[gpu]')")
    if missing := located.missing_packages():
        return Choice(node, embedded, f"{gpu}'s own code needs {', '.join(missing)} (not installed)")
    if not cuda():
        return Choice(node, embedded, f"{gpu} weights found but no CUDA device")
    return Choice(node, gpu, f"{gpu} weights found at {located.path} and CUDA is available")


def _no_torch(model: str) -> AdgraphError:
    return AdgraphError(
        "MODEL_UNAVAILABLE",
        f"the {model} backend needs torch, diffusers and transformers: pip install 'adgraph[gpu]'",
        model=model,
    )


def _no_packages(model: str, missing: list[str]) -> AdgraphError:
    return AdgraphError(
        "MODEL_UNAVAILABLE",
        f"the {model} model's own code imports {', '.join(missing)}, which are not installed: "
        f"pip install {' '.join(missing)} (with a torchvision that matches your torch)",
        model=model,
        missing_packages=missing,
    )


def models_report(settings: Any, cuda: Callable[[], bool] = cuda_available) -> list[dict[str, Any]]:
    """`adgraph models list`: each model, where it was looked for, found or not, sizes, and the backend
    `auto` would give its node and why. CUDA is only probed (torch imported) when some weights are found."""
    cuda = functools.cache(cuda)
    rows = []
    for info in MODELS.values():
        located = locate(info, getattr(settings, info.setting), settings.models_dir)
        row: dict[str, Any] = {
            "model": info.name,
            "repo_id": info.repo_id,
            "setting": env_name(info.setting),
            "path": str(located.path) if located.path else None,
            "found": located.found,
            "source": located.source,
            "expected_bytes": info.expected_bytes,
            "weights_bytes": located.weights_bytes(),
            "missing_packages": located.missing_packages(),
            "node": MODEL_NODE.get(info.name),
        }
        if (node := MODEL_NODE.get(info.name)) is not None:
            requested = getattr(settings, BACKEND_SETTING[node])
            try:
                picked = choose(node, "auto", located, cuda=cuda)
                row["auto"] = {"backend": picked.backend, "reason": picked.reason}
            except AdgraphError as e:  # pragma: no cover - auto never raises
                row["auto"] = {"backend": None, "reason": e.message}
            row["configured_backend"] = requested
        rows.append(row)
    return rows


# -- the components ---------------------------------------------------------------------------------------


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
    fonts: FontconfigCatalog | None = None,
    artifacts: FileArtifactStore | None = None,
) -> AdContext:
    """The embedded defaults (u2netp, studio backdrop, stats analysis), with the GPU backend of each node
    that `models` chose; rule agents, or LLM agents over `chat` that fall back to the rules part by part."""
    gpu = {node: c.gpu for node, c in models.choices.items()} if models is not None else {}
    runtime = models.runtime if models is not None else None
    stats = StatsAnalyzer()
    fonts = fonts or FontconfigCatalog()
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
    artifacts = artifacts or open_artifact_store(settings)
    return AdContext(
        artifacts=artifacts,
        cache=FileStepCache(settings.step_cache_dir, artifacts) if settings.step_cache else None,
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


def make_homepage_context(
    settings: Settings,
    renderer: SiteRenderer,
    *,
    agents: tuple[Any, Any, Any] | None = None,
    chat: Any = None,
    fonts: FontconfigCatalog | None = None,
    artifacts: FileArtifactStore | None = None,
) -> HomepageContext:
    """Rule agents; LLM agents over `chat` (one LLM server per process serves both workflows), which fall
    back to the rules part by part; or `agents` = (planner, designer, developer)."""
    fonts = fonts or FontconfigCatalog()
    if agents is None and chat is not None:
        from agents.llm_site import LLMSiteDesigner, LLMSiteDeveloper, LLMSitePlanner

        usage = Usage()
        agents = (
            LLMSitePlanner(chat, usage),
            LLMSiteDesigner(chat, fonts, usage),
            LLMSiteDeveloper(chat, usage),
        )
    planner, designer, developer = agents or (RuleSitePlanner(), RuleSiteDesigner(fonts), RuleSiteDeveloper())
    return HomepageContext(
        artifacts=artifacts or open_artifact_store(settings),
        planner=planner,
        designer=designer,
        developer=developer,
        renderer=renderer,
        fonts=fonts,
    )


@dataclass
class Components:
    """What jobs run with, built once per process: the tools that check input, each workflow's run context,
    and the shared handles they hold (Chromium, the model runtime, the LLM)."""

    settings: Settings
    artifacts: FileArtifactStore
    fonts: FontconfigCatalog
    models: GpuModels
    renderer: Any
    contexts: dict[str, Any] = field(default_factory=dict)
    """The run context of each workflow, by name (empty for a process that runs no jobs)."""

    def resolve_font(self, family: str) -> str:
        """An installed family's canonical name; INVALID_INPUT naming the installed ones otherwise."""
        return self.fonts.resolve(family)

    def undrawable(self, text: str) -> list[str]:
        """The pictographs (emoji) in `text` that no installed font has a glyph for: Chromium would draw
        them as empty boxes. With a colour emoji font installed (fonts-noto-color-emoji) there are none."""
        return [c for c in pictographs(text) if not self.fonts.draws(c)]


@asynccontextmanager
async def open_components(
    settings: Settings, *, run_jobs: bool = True, evaluations: bool = True
) -> AsyncIterator[Components]:
    """Everything a process needs, closed on exit. `run_jobs=False` (an API whose jobs run in workers):
    no job backends, no LLM, Chromium never started. `evaluations`: also hold the CLIP scorer."""
    models = make_models(settings, for_jobs=run_jobs, evaluations=evaluations)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(models.close)
        renderer = make_renderer(settings)
        fonts = FontconfigCatalog()
        store = open_artifact_store(settings)
        stack.callback(store.close)
        parts = Components(settings, store, fonts, models, renderer)
        if run_jobs:
            await stack.enter_async_context(renderer)
            chat = await stack.enter_async_context(open_llm(settings))
            parts.contexts = {
                "ad": make_ad_context(
                    settings, renderer, models, chat=chat, fonts=fonts, artifacts=parts.artifacts
                ),
                "homepage": make_homepage_context(
                    settings, renderer, chat=chat, fonts=fonts, artifacts=parts.artifacts
                ),
            }
        yield parts


@asynccontextmanager
async def open_ad_context(settings: Settings, *, evaluations: bool = False) -> AsyncIterator[AdContext]:
    """Just the ad workflow's run context, with all it holds open (benchmarks, tests of the graph)."""
    async with open_components(settings, evaluations=evaluations) as parts:
        yield parts.contexts["ad"]
