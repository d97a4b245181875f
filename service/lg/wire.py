"""adgraph's threads, runs and checkpoints in the LangGraph Platform API's JSON shapes (what langgraph_sdk
and Studio read), and the request bodies they send."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.db import Job
from service.jobs import Checkpoint
from service.schemas import jsonable
from service.threads import ThreadState, ThreadView, assistant_id, run_status
from service.workflows import WORKFLOWS

STARTED = dt.datetime.now(dt.UTC).isoformat()
"""When this process started: the default assistants' creation time (they are built in, not stored)."""


class Body(BaseModel):
    """A request body: unknown keys are ignored (the SDK grows new ones; they change nothing here)."""

    model_config = ConfigDict(extra="ignore")


class AssistantSearch(Body):
    graph_id: str | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class ThreadCreate(Body):
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadPatch(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadSearch(Body):
    metadata: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class CheckpointRef(Body):
    checkpoint_id: str | None = None


class StateQuery(Body):
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None


class StateUpdate(Body):
    values: dict[str, Any] | None = None
    as_node: str | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None


class HistoryQuery(Body):
    limit: int = Field(10, ge=1, le=1000)
    before: CheckpointRef | str | None = None


class RunCreate(Body):
    assistant_id: str
    input: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    stream_mode: str | list[str] = "values"
    multitask_strategy: str = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    metadata: dict[str, Any] | None = None

    def fork_from(self) -> str | None:
        return self.checkpoint_id or (self.checkpoint.checkpoint_id if self.checkpoint else None)

    def modes(self) -> list[str]:
        return [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)


# -- answers ------------------------------------------------------------------------------------------


def assistant(graph_id: str) -> dict[str, Any]:
    return {
        "assistant_id": assistant_id(graph_id),
        "graph_id": graph_id,
        "name": graph_id,
        "description": f"adgraph's {graph_id} workflow: {' → '.join(WORKFLOWS[graph_id].nodes)}",
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": STARTED,
        "updated_at": STARTED,
    }


def thread(view: ThreadView, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The thread, with its jobs' lineage in `metadata` (each job's id, status and where it was forked
    from) and its last job's newest values."""
    lineage = [
        {
            "job_id": j.id,
            "status": j.status,
            "parent_job_id": j.parent_job_id,
            "parent_checkpoint_id": j.parent_checkpoint_id,
        }
        for j in view.jobs
    ]
    meta = {**view.metadata, "jobs": lineage, "job_id": view.head.id if view.head else None}
    if view.graph_id:
        meta.update(graph_id=view.graph_id, assistant_id=assistant_id(view.graph_id))
    return {
        "thread_id": view.id,
        "created_at": view.created_at.isoformat(),
        "updated_at": view.updated_at.isoformat(),
        "metadata": meta,
        "status": view.status,
        "values": values or {},
        "interrupts": {},
        "config": {},
    }


def checkpoint_ref(thread_id: str, checkpoint_id: str | None) -> dict[str, Any] | None:
    if checkpoint_id is None:
        return None
    return {
        "thread_id": thread_id,
        "checkpoint_ns": "",
        "checkpoint_id": checkpoint_id,
        "checkpoint_map": None,
    }


def state(s: ThreadState) -> dict[str, Any]:
    """A `ThreadState`: values, next, the checkpoint and its parent, metadata (with the adgraph job and
    node that wrote it), the tasks that would run next."""
    cp: Checkpoint | None = s.checkpoint
    if cp is None:
        return {
            "values": {}, "next": [], "checkpoint": None, "metadata": {}, "created_at": None,
            "parent_checkpoint": None, "tasks": [], "interrupts": [],
        }  # fmt: skip
    info, job = cp.info, s.job
    assert job is not None
    return {
        "values": jsonable(cp.values or {}),
        "next": list(info.next),
        "checkpoint": checkpoint_ref(s.thread_id, info.id),
        "metadata": {
            "source": info.source,
            "step": info.step,
            "parents": {},
            "graph_id": job.workflow,
            "run_id": job.id,
            "adgraph": {"job_id": job.id, "node": info.node},
        },
        "created_at": info.created_at,
        "parent_checkpoint": checkpoint_ref(s.thread_id, info.parent_id),
        "tasks": [
            {
                "id": f"{info.id}:{name}",
                "name": name,
                "path": ["__pregel_pull", name],
                "error": None,
                "interrupts": [],
                "checkpoint": None,
                "state": None,
                "result": None,
            }
            for name in info.next
        ],  # fmt: skip
        "interrupts": [],
    }


def run(job: Job, thread_id: str) -> dict[str, Any]:
    """A run: the job, under LangGraph's names (`run_id` is the job's id)."""
    parent = {"job_id": job.parent_job_id, "checkpoint_id": job.parent_checkpoint_id}
    return {
        "run_id": job.id,
        "thread_id": thread_id,
        "assistant_id": assistant_id(job.workflow),
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "status": run_status(job),
        "metadata": {"job_id": job.id, "parent": parent if job.parent_job_id else None},
        "kwargs": {"input": job.input},
        "multitask_strategy": "enqueue",
    }
