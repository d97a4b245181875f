"""What `langgraph.json` points at: the graphs and checkpointer for `langgraph dev` / LangGraph Studio.

The only module that compiles a graph at import time. The dev server cannot pass our run context, so
runs started from Studio use a process-wide default built from the same settings as the CLI, and the
checkpointer is the service's database: jobs made by `adgraph ad` or the API show up in Studio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver

from checkpoints.saver import open_checkpointer
from graph.context import set_default_context
from graph.homepage_context import set_default_homepage_context
from service.settings import Settings
from service.wiring import make_ad_context, make_homepage_context, make_models, make_renderer
from service.workflows import WORKFLOWS, state_types

_settings = Settings()
# Chromium starts on first render; the GPU models (if configured) load on first use
_renderer = make_renderer(_settings)
set_default_context(make_ad_context(_settings, _renderer, make_models(_settings, evaluations=False)))
set_default_homepage_context(make_homepage_context(_settings, _renderer))

ad = WORKFLOWS["ad"].build()
homepage = WORKFLOWS["homepage"].build()


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver]:
    async with open_checkpointer(_settings.checkpoints, state_types()) as saver:
        yield saver
