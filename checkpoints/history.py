"""Reading a job's checkpoint history and branching a new job from any checkpoint.

A job is one LangGraph thread (thread_id = job id). The graphs are linear, so the node that wrote a
checkpoint is the one before whatever the checkpoint says runs next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from kernel.errors import AdgraphError

INPUT_NODE = "__input__"
START_NODE = "__start__"


@dataclass(frozen=True)
class CheckpointInfo:
    id: str
    step: int
    node: str
    """The node whose output this checkpoint holds (`__input__` / `__start__` before any node ran)."""
    source: str
    created_at: str
    parent_id: str | None
    next: tuple[str, ...]


def thread_config(job_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable = {"thread_id": job_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def written_by(snapshot: StateSnapshot | Mapping[str, Any], order: Sequence[str]) -> str:
    """The node whose output `snapshot` holds, for a linear graph whose nodes run in `order`."""
    if isinstance(snapshot, StateSnapshot):
        metadata, nxt = snapshot.metadata or {}, snapshot.next
    else:
        metadata, nxt = snapshot.get("metadata") or {}, tuple(snapshot.get("next") or ())
    if metadata.get("source") == "input":
        return INPUT_NODE
    if not nxt:
        return order[-1]
    i = order.index(nxt[0]) if nxt[0] in order else 0
    return order[i - 1] if i > 0 else START_NODE


def describe(snapshot: StateSnapshot, order: Sequence[str]) -> CheckpointInfo:
    parent = (snapshot.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    return CheckpointInfo(
        id=snapshot.config["configurable"]["checkpoint_id"],
        step=(snapshot.metadata or {}).get("step", -1),
        node=written_by(snapshot, order),
        source=(snapshot.metadata or {}).get("source", ""),
        created_at=snapshot.created_at or "",
        parent_id=parent,
        next=snapshot.next,
    )


async def find_snapshot(
    graph: CompiledStateGraph,
    job_id: str,
    order: Sequence[str],
    *,
    checkpoint_id: str | None = None,
    node: str | None = None,
) -> StateSnapshot:
    """The checkpoint with that id, or the newest one holding `node`'s output."""
    if (checkpoint_id is None) == (node is None):
        raise AdgraphError("INVALID_INPUT", "give exactly one of a checkpoint id or a node name")
    if node is not None and node not in order:
        raise AdgraphError("INVALID_INPUT", f"unknown node {node!r}; the nodes are {', '.join(order)}")
    found = False
    async for snap in graph.aget_state_history(thread_config(job_id)):
        found = True
        if checkpoint_id is not None and snap.config["configurable"]["checkpoint_id"] == checkpoint_id:
            return snap
        if node is not None and written_by(snap, order) == node:
            return snap
    if not found:
        raise AdgraphError("JOB_NOT_FOUND", f"no job {job_id!r} in the checkpoint database")
    if checkpoint_id is not None:
        raise AdgraphError("CHECKPOINT_NOT_FOUND", f"job {job_id} has no checkpoint {checkpoint_id!r}")
    raise AdgraphError(
        "CHECKPOINT_NOT_FOUND",
        f"node {node!r} has not completed in job {job_id}; branch from an earlier node",
    )


async def seed_branch(
    graph: CompiledStateGraph,
    source: StateSnapshot,
    new_job_id: str,
    order: Sequence[str],
    overrides: Mapping[str, Any],
    consumers: Mapping[str, str],
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """Start thread `new_job_id` at `source` with `overrides` applied; return the config to run it with.

    Refuses an override that the branch point has already consumed (a new prompt after `background` ran
    would silently change nothing): the error names the node to branch from instead.
    """
    node = written_by(source, order)
    if node in (INPUT_NODE, START_NODE):
        raise AdgraphError("INVALID_INPUT", "that checkpoint is before any node ran: start a new job instead")
    done = set(order[: order.index(node) + 1])
    for key in overrides:
        consumer = consumers.get(key)
        if consumer in done:
            i = order.index(consumer)
            hint = f"branch from {order[i - 1]!r}" if i > 0 else "start a new job"
            raise AdgraphError(
                "INVALID_INPUT",
                f"{key!r} is first used by {consumer!r}, which already ran at this checkpoint; "
                f"{hint} to change it",
                field=key,
            )
    values = {**source.values, **overrides}
    cfg = thread_config(new_job_id)
    cfg["metadata"] = dict(metadata)
    return await graph.aupdate_state(cfg, values, as_node=node)
