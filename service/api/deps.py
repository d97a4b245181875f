"""The app's resources, as `Annotated` dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from langgraph.graph.state import CompiledStateGraph

from checkpoints.artifacts import FileArtifactStore
from service.events import EventBus
from service.runner import JobRunner
from service.settings import Settings
from service.store import JobStore


@dataclass
class Resources:
    settings: Settings
    store: JobStore
    artifacts: FileArtifactStore
    graphs: dict[str, CompiledStateGraph]
    runner: JobRunner
    bus: EventBus
    ctx: Any
    """The ad workflow's run context (fonts, artifacts)."""
    metrics: Any
    contexts: dict[str, Any] = field(default_factory=dict)
    """Each workflow's run context, by workflow name."""

    def context(self, workflow: str) -> Any:
        return self.contexts.get(workflow, self.ctx)


async def _resources(request: Request) -> Resources:
    return request.app.state.resources


Res = Annotated[Resources, Depends(_resources)]
