"""The workflow registry: for each workflow, its graph, nodes, input schema, and the few functions the
application layer needs to turn a job's input into graph state and a finished state into results.

Adding a workflow is one entry here (a module beside this one) plus its graph, nodes and schemas; nothing
else in the service names a workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from checkpoints.artifacts import FileArtifactStore
from kernel.errors import AdgraphError
from kernel.models import ArtifactRef


class Tools(Protocol):
    """What checking an input needs: the stored files and the installed fonts."""

    artifacts: FileArtifactStore

    def resolve_font(self, family: str) -> str: ...

    def undrawable(self, text: str) -> list[str]:
        """The emoji and other pictographs in `text` that no installed font can draw (empty boxes)."""
        ...


@dataclass(frozen=True)
class Output:
    """A downloadable result of a finished job, and the backend of each node that shaped it."""

    ref: ArtifactRef
    backends: dict[str, str]


@dataclass(frozen=True)
class VariantSpec:
    """One variant of a job that asked for several (an ad in several copies and sizes): the job itself
    is variant 0; each other one is a branch of variant `source`'s job from its checkpoint after
    `from_node`, with `changes` to its input (`service.variants` makes them as their sources finish)."""

    index: int
    source: int | None
    """The variant whose job it is branched from; None for variant 0 (the job itself)."""
    from_node: str | None
    changes: dict[str, Any]
    label: dict[str, Any]
    """What sets it apart, as listed to the user (an ad's size and copy)."""


@dataclass(frozen=True)
class Workflow:
    name: str
    nodes: tuple[str, ...]
    input_model: type[BaseModel]
    """The job's input as a user sends it (artifacts as ids); stored with the job."""
    build: Callable[..., CompiledStateGraph]
    consumers: dict[str, str]
    """The node that first reads each state key: a branch must start before it for a change to matter."""
    branch_fields: tuple[str, ...]
    """The input fields a branch may change."""
    previews: dict[str, str]
    """State key written by each node that makes an image (a checkpoint's preview)."""
    prepare: Callable[[Any, Tools], Any]
    """(validated input, tools) → the input to store, after checking what it refers to (blocking)."""
    graph_input: Callable[[Any, Tools], dict[str, Any]]
    """(prepared input, tools) → the graph's input state."""
    input_of: Callable[[dict[str, Any]], dict[str, Any]]
    """A checkpoint's values → the job input that made them (what a branch starts from)."""
    artifacts_of: Callable[[Any], list[str]]
    """A validated input → the artifact ids it refers to (the caller must be allowed to see each)."""
    results: Callable[[dict[str, Any]], dict[str, Output]]
    """A finished job's state → its downloadable results by name."""
    files: Callable[[Any, FileArtifactStore, Path], dict[str, Any]]
    """(run result, store, folder) → write the job's files there; their part of result.json."""
    report: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda values: None
    """A finished job's state → a `report` event (who made what, what the checks found), if any."""
    state_types: tuple[type, ...] = ()
    """The classes its checkpoints may hold (the checkpoint serializer rebuilds only these)."""
    variants: Callable[[Any], list[VariantSpec]] = lambda opts: []
    """A validated input → its variants in order (none: the job is one result)."""


def _registry() -> dict[str, Workflow]:
    from service.workflows.ad import AD
    from service.workflows.homepage import HOMEPAGE

    return {wf.name: wf for wf in (AD, HOMEPAGE)}


WORKFLOWS: dict[str, Workflow] = _registry()


def get_workflow(name: str) -> Workflow:
    if name not in WORKFLOWS:
        raise AdgraphError(
            "INVALID_INPUT",
            f"unknown workflow {name!r}; choose one of {', '.join(WORKFLOWS)}",
            field="workflow",
        )
    return WORKFLOWS[name]


def state_types() -> tuple[type, ...]:
    """Every class any workflow's checkpoints may hold, for the checkpoint serializer."""
    return tuple(dict.fromkeys(t for wf in WORKFLOWS.values() for t in wf.state_types))
