"""Running a job's graph to its end (new, resumed or branched), as a stream of events and a `RunResult`."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.errors import GraphDrained
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import RunControl

from checkpoints.history import thread_config, written_by
from kernel.errors import AdgraphError, StepCancelled, TransientError

Listener = Callable[[str, dict[str, Any]], Awaitable[None] | None]


def new_job_id() -> str:
    return str(uuid.uuid4())


@dataclass
class RunResult:
    job_id: str
    status: str = "running"
    nodes: list[dict[str, Any]] = field(default_factory=list)
    """Each node executed in this run, in order, with seconds."""
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    """Each checkpoint written in this run: id, step, node."""
    values: dict[str, Any] = field(default_factory=dict)
    error: AdgraphError | None = None
    parent: dict[str, str] | None = None
    drained: str | None = None
    """Why the run stopped early at a node boundary (a RunControl drain), if it did."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """What nodes reported through the stream writer (progress inside a step, agent fallbacks), in order."""


async def run_job(
    graph: CompiledStateGraph,
    ctx: Any,
    job_id: str,
    graph_input: dict[str, Any] | None,
    *,
    config: dict[str, Any] | None = None,
    listener: Listener | None = None,
    order: tuple[str, ...] | None = None,
    control: RunControl | None = None,
) -> RunResult:
    """Run (or continue, with `graph_input=None`) thread `job_id` until it ends; never raises job errors.
    `order`: the nodes of the (linear) graph in the order they run; by default, the order they were added."""
    order = order or tuple(n for n in graph.nodes if n != "__start__")
    config = config or thread_config(job_id)
    result = RunResult(job_id=job_id, parent=(config.get("metadata") or {}).get("parent"))
    started: dict[str, float] = {}
    running: list[str] = []  # nodes started and not finished; a node's custom events are credited to it
    cached: set[str] = set()  # running nodes that said they reused a cached result

    async def emit(kind: str, data: dict[str, Any]) -> None:
        if listener is not None and inspect.isawaitable(out := listener(kind, data)):
            await out

    # "sync": each checkpoint is on disk before the next node starts, so a kill loses at most one node.
    durability = "sync" if graph.checkpointer else None
    try:
        async for mode, data in graph.astream(
            graph_input,
            config,
            context=ctx,
            durability=durability,
            control=control,
            stream_mode=["tasks", "checkpoints", "values", "custom"],
        ):
            if mode == "tasks" and "triggers" in data:
                started[data["id"]] = time.perf_counter()
                running.append(data["name"])
                await emit("node_started", {"node": data["name"]})
            elif mode == "tasks":
                if data["name"] in running:
                    running.remove(data["name"])
                seconds = round(time.perf_counter() - started.pop(data["id"], time.perf_counter()), 4)
                error = data.get("error")
                # a cancel inside the step stopped it: it did not fail, and it runs again on resume
                status = (
                    "interrupted" if isinstance(error, StepCancelled) else "failed" if error else "succeeded"
                )
                result.nodes.append({"name": data["name"], "status": status, "seconds": seconds})
                if data["name"] in cached:
                    cached.discard(data["name"])
                    result.nodes[-1]["cached"] = True
                await emit("node_finished", result.nodes[-1])
            elif mode == "custom":
                event = _custom_event(data, running[-1] if running else None)
                if event["type"] == "cached":  # the step reused an earlier result instead of working
                    cached.add(event["node"])
                if event["type"] != "progress":  # progress is transient; fallbacks and the like are kept
                    result.events.append(event)
                await emit(event["type"], event)
            elif mode == "values":
                result.values = dict(data)
                await emit("values", result.values)
            elif mode == "checkpoints":
                cp = {
                    "id": data["config"]["configurable"]["checkpoint_id"],
                    "step": data["metadata"].get("step"),
                    "node": written_by(data, order),
                }
                result.checkpoints.append(cp)
                await emit("checkpoint", cp)
        result.status = "succeeded"
    except GraphDrained as e:  # cancel or shutdown asked to stop at a node boundary; checkpoints intact
        result.status, result.drained = "cancelled", e.reason
    except StepCancelled:  # cancel seen inside a long step; the step re-runs on resume
        result.status, result.drained = "cancelled", "cancel"
    except AdgraphError as e:
        result.status, result.error = "failed", e
    except Exception as e:  # noqa: BLE001 - a job ends failed with a code; the checkpoints stay resumable
        result.status, result.error = "failed", error_of(e)
    return result


def error_of(e: Exception) -> AdgraphError:
    """An unexpected exception as a job error: transient kinds (a step's own retries used up, a dropped
    database connection) with the codes the runner retries, the rest INTERNAL."""
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, TransientError):
        return AdgraphError("TRANSIENT_FAILURE", text)
    if _connection_lost(e):
        return AdgraphError("DATABASE_UNAVAILABLE", text)
    return AdgraphError("INTERNAL", text)


def _connection_lost(e: BaseException) -> bool:
    """A database connection failure (SQLite locked, PostgreSQL restarting), by its driver's classes."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import DBAPIError

    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, psycopg.OperationalError | ConnectionError):
            return True
        if isinstance(seen, sqlite3.OperationalError) and "locked" in str(seen):
            return True
        if type(seen).__module__.startswith("asyncpg") and "Connection" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _custom_event(data: Any, node: str | None) -> dict[str, Any]:
    """A node's `runtime.stream_writer(...)` payload as an event: {"type", "node", ...}."""
    if isinstance(data, dict) and isinstance(data.get("type"), str):
        return {**data, "node": data.get("node", node)}
    return {"type": "progress", "node": node, "message": str(data)}
