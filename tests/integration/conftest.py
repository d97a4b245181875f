"""Real components: u2netp through onnxruntime, Chromium through Playwright, SQLite checkpoints."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from checkpoints.saver import open_checkpointer
from graph.ad import build_ad_graph
from graph.context import AdContext
from kernel.models import AdCopy
from service.running import RunResult, new_job_id, run_job
from service.settings import Settings
from service.wiring import open_ad_context
from service.workflows import state_types


@dataclass
class Env:
    settings: Settings
    graph: Any
    ctx: AdContext

    async def run(self, photo, headline: str = "갓 볶은 원두, 오늘의 커피", **kw: Any) -> RunResult:
        inp = {
            "product_image": self.ctx.artifacts.put_image_sync(photo),
            "copy": AdCopy(
                headline=headline,
                subline=kw.pop("subline", "매일 아침 직접 로스팅합니다"),
                cta=kw.pop("cta", "지금 주문하기"),
            ),
            "background_prompt": "warm beige linen",
            "size": "1080x1080",
            "seed": 1,
            "text_position": "auto",
            "font": None,
            **kw,
        }
        result = await run_job(self.graph, self.ctx, new_job_id(), inp)
        assert result.status == "succeeded", result.error and result.error.to_dict()
        return result


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def env(tmp_path_factory) -> AsyncIterator[Env]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("adgraph"))
    async with (
        open_checkpointer(settings.checkpoints, state_types()) as saver,
        open_ad_context(settings) as ctx,
    ):
        yield Env(settings, build_ad_graph(saver), ctx)


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    """Environment for `adgraph` subprocesses: their own data dir."""
    return {**os.environ, "ADGRAPH_DATA_DIR": str(tmp_path / "data")}


@dataclass(frozen=True)
class TinyModels:
    """Tiny random-weight models saved the way the real ones ship (see tests/tinymodels.py)."""

    birefnet: Path
    flux: Path
    qwen2vl: Path
    clip: Path

    def settings(self, data_dir: Path, **kw: Any) -> Settings:
        """All three GPU backends forced on, on the CPU, at toy sizes (64 px, 2 diffusion steps)."""
        return Settings(
            **{
                "data_dir": data_dir,
                "database_url": None,
                "checkpoint_url": None,
                "models_dir": None,
                "birefnet_path": self.birefnet,
                "flux_path": self.flux,
                "qwen2vl_path": self.qwen2vl,
                "clip_path": self.clip,
                "segment_backend": "birefnet",
                "background_backend": "flux",
                "analyze_backend": "qwen2vl",
                "gpu_device": "cpu",
                "gpu_memory_budget": 64 * 2**20,
                "flux_steps": 2,
                "flux_resolution": 64,
                "birefnet_resolution": 64,
                "qwen2vl_max_new_tokens": 8,
                **kw,
            }
        )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    """Built once per session (a few seconds, most of it importing diffusers)."""
    for module in ("torch", "diffusers", "transformers"):
        pytest.importorskip(module, reason="the GPU backends need the gpu extra: pip install -e '.[dev,gpu]'")
    from tests import tinymodels

    root = tmp_path_factory.mktemp("tiny-models")
    return TinyModels(
        birefnet=tinymodels.build_tiny_birefnet(root / "birefnet"),
        flux=tinymodels.build_tiny_flux(root / "flux"),
        qwen2vl=tinymodels.build_tiny_qwen2vl(root / "qwen2vl"),
        clip=tinymodels.build_tiny_clip(root / "clip"),
    )
