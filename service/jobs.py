"""Running an ad job to completion (new, resumed or branched) and writing its files."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.errors import GraphDrained
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import RunControl

from checkpoints.artifacts import FileArtifactStore
from checkpoints.history import thread_config, written_by
from graph.context import AdContext
from graph.state import AD_NODES
from kernel.errors import AdgraphError, StepCancelled

OUTPUT_FILES = {"cutout": "cutout.png", "scene": "scene.png", "ad": "ad.png"}
# The nodes whose backend shaped each output image (their names are in state as `<node>_backend`).
IMAGE_NODES = {
    "cutout": ("segment",),
    "scene": ("segment", "background"),
    "ad": ("segment", "background", "analyze"),
}
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
    ctx: AdContext,
    job_id: str,
    graph_input: dict[str, Any] | None,
    *,
    config: dict[str, Any] | None = None,
    listener: Listener | None = None,
    order: tuple[str, ...] = AD_NODES,
    control: RunControl | None = None,
) -> RunResult:
    """Run (or continue, with `graph_input=None`) thread `job_id` until it ends; never raises job errors."""
    config = config or thread_config(job_id)
    result = RunResult(job_id=job_id, parent=(config.get("metadata") or {}).get("parent"))
    started: dict[str, float] = {}
    running: list[str] = []  # nodes started and not finished; a node's custom events are credited to it

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
                await emit("node_finished", result.nodes[-1])
            elif mode == "custom":
                event = _custom_event(data, running[-1] if running else None)
                if event["type"] != "progress":  # progress is transient; fallbacks and the like are kept
                    result.events.append(event)
                await emit(event["type"], event)
            elif mode == "values":
                result.values = dict(data)
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
        result.status, result.error = "failed", AdgraphError("INTERNAL", f"{type(e).__name__}: {e}")
    return result


def _custom_event(data: Any, node: str | None) -> dict[str, Any]:
    """A node's `runtime.stream_writer(...)` payload as an event: {"type", "node", ...}."""
    if isinstance(data, dict) and isinstance(data.get("type"), str):
        return {**data, "node": data.get("node", node)}
    return {"type": "progress", "node": node, "message": str(data)}


def backends_of(values: dict[str, Any], image: str | None = None) -> dict[str, str]:
    """Node -> backend that ran it (u2netp/birefnet, studio/flux, stats/qwen2vl), for one image or all."""
    nodes = IMAGE_NODES.get(image, ()) if image else ("segment", "background", "analyze")
    return {n: values[f"{n}_backend"] for n in nodes if f"{n}_backend" in values}


def write_outputs(result: RunResult, store: FileArtifactStore, out_dir: Path) -> dict[str, Any]:
    """Copy the job's images into `out_dir` and write result.json last (so its presence means done)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts: dict[str, str] = {}
    if result.status == "succeeded":
        for key, filename in OUTPUT_FILES.items():
            ref = result.values.get(key)
            if ref is not None:
                _atomic_copy(store.path(ref), out_dir / filename)
                artifacts[key] = str(out_dir / filename)
    else:  # a failed run leaves no image that could pass for its output
        for filename in OUTPUT_FILES.values():
            (out_dir / filename).unlink(missing_ok=True)
    doc: dict[str, Any] = {
        "job_id": result.job_id,
        "status": result.status,
        "artifacts": artifacts,
        "nodes": result.nodes,
        "checkpoints": result.checkpoints,
    }
    if backends := backends_of(result.values):
        doc["backends"] = backends
    if result.parent:
        doc["parent"] = result.parent
    if result.events:
        doc["events"] = result.events
    if result.error is not None:
        doc["error"] = result.error.to_dict()
    _atomic_write(out_dir / "result.json", json.dumps(doc, indent=2, ensure_ascii=False).encode())
    return doc


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".tmp-")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def check_branch(
    values: dict[str, Any],
    changes: dict[str, Any],
    fields: tuple[str, ...],
    *,
    first_key: str,
    what: str = "a branch",
) -> None:
    """Refuse a branch that changes what it can't, or starts from before the first node (no `first_key`)."""
    unknown = set(changes) - set(fields)
    if unknown:
        raise AdgraphError(
            "INVALID_INPUT",
            f"cannot change {', '.join(sorted(unknown))} in {what}; change one of {', '.join(fields)}",
            fields=sorted(unknown),
        )
    if first_key not in values:
        raise AdgraphError("INVALID_INPUT", "that checkpoint is before any node ran: start a new job instead")


BRANCH_FIELDS = ("headline", "subline", "cta", "background_prompt", "seed", "font")


def branch_changes(
    values: dict[str, Any], changes: dict[str, Any], resolve_font: Callable[[str], str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply a branch's `changes` (AdOptions field names) to a checkpoint's `values`.

    Returns (the full validated options as a dict, the state overrides that differ from `values`).
    """
    from kernel.models import AdCopy
    from service.requests import AdOptions, parse

    check_branch(values, changes, BRANCH_FIELDS, first_key="copy")
    old: AdCopy = values["copy"]
    current = {
        "headline": old.headline,
        "subline": old.subline,
        "cta": old.cta,
        "background_prompt": values["background_prompt"],
        "size": values["size"],
        "seed": values["seed"],
        "text_position": values["text_position"],
        "font": values["font"],
        "restyle": values.get("restyle"),
    }
    merged = parse(AdOptions, {**current, **{k: v for k, v in changes.items() if v is not None}})
    if merged.font is not None:
        merged = merged.model_copy(update={"font": resolve_font(merged.font)})
    overrides: dict[str, Any] = {}
    new_copy = AdCopy(headline=merged.headline, subline=merged.subline, cta=merged.cta)
    if new_copy != old:
        overrides["copy"] = new_copy
    for key in ("background_prompt", "seed", "font"):
        if getattr(merged, key) != values[key]:
            overrides[key] = getattr(merged, key)
    return merged.model_dump(), overrides
