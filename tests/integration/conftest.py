"""Real components: u2netp through onnxruntime, Chromium through Playwright, SQLite checkpoints."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from checkpoints.saver import open_checkpointer
from graph.ad import build_ad_graph
from graph.context import AdContext
from graph.models import AdCopy
from service.context import ad_context
from service.jobs import RunResult, new_job_id, run_job
from service.settings import Settings

ADGRAPH = str(Path(sys.executable).with_name("adgraph"))


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
    async with open_checkpointer(settings.checkpoints) as saver, ad_context(settings) as ctx:
        yield Env(settings, build_ad_graph(saver), ctx)


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    """Environment for `adgraph` subprocesses: their own data dir."""
    return {**os.environ, "ADGRAPH_DATA_DIR": str(tmp_path / "data")}
