"""Threads: a line of jobs on the same work, the application layer under the LangGraph API (service/lg).

LangGraph's model is a thread of checkpoints that runs append to; adgraph's is jobs, each its own
checkpointed LangGraph thread. A thread here is the jobs made one after another on the same work: its
first job, the jobs forked from its checkpoints, and the runs that resumed them. One run is one job
(`run_id` = the job's id), so everything a job is anywhere else it is here too: the same row, events,
lineage, tenant, quota and results.

- A job made by another door (REST, CLI, MCP) is a thread of its own, with the job's id, until a run is
  started on it: then the thread gets its row and the job is put on it.
- A run with input starts a new job from that input, over the thread's last input (LangGraph keeps
  its channels' values between runs); with a checkpoint id, a job branched from that checkpoint with the
  input as its changes; with neither, the thread's last job resumed.
- `update_state` stages a fork (a checkpoint id the next run forks from); nothing runs until then.
- The jobs of one thread run one after another (`multitask_strategy` "enqueue"); "reject" refuses a run
  while one is queued or running.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from kernel.errors import AdgraphError
from service.accounts import Caller
from service.db import Job, Thread, utcnow
from service.jobs import FINISHED, Checkpoint, Jobs
from service.store import check_job_id
from service.workflows import WORKFLOWS, get_workflow

ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
"""The namespace of LangGraph's default assistant ids: uuid5(this, graph_id)."""
ACTIVE = ("queued", "running")
MULTITASK = ("reject", "enqueue")


def assistant_id(graph_id: str) -> str:
    return str(uuid.uuid5(ASSISTANT_NAMESPACE, graph_id))


def workflow_of_assistant(assistant: str) -> str:
    """The workflow an assistant id (a graph name, or its default assistant's UUID) stands for."""
    for name in WORKFLOWS:
        if assistant in (name, assistant_id(name)):
            return name
    raise AdgraphError(
        "ASSISTANT_NOT_FOUND",
        f"no assistant {assistant!r}; the assistants are {', '.join(WORKFLOWS)} (or their ids)",
    )


@dataclass
class ThreadView:
    """A thread as a caller sees it: its row (None for a job that is a thread of its own) and its jobs."""

    id: str
    tenant: str
    graph_id: str | None
    metadata: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    jobs: list[Job] = field(default_factory=list)
    staged: list[dict[str, Any]] = field(default_factory=list)
    stored: bool = False

    @property
    def head(self) -> Job | None:
        return self.jobs[-1] if self.jobs else None

    @property
    def status(self) -> str:
        """LangGraph's thread status: busy while a job runs or waits, error after a failure,
        interrupted after a cancel (a run with no input resumes it), else idle."""
        head = self.head
        if head is None:
            return "idle"
        if any(j.status in ACTIVE for j in self.jobs):
            return "busy"
        return {"failed": "error", "cancelled": "interrupted"}.get(head.status, "idle")


@dataclass(frozen=True)
class ThreadState:
    """One checkpoint of a thread: the job it belongs to and the checkpoint with its values (None for a
    thread with no checkpoint yet)."""

    thread_id: str
    job: Job | None
    checkpoint: Checkpoint | None


class Threads:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.store = jobs.store

    # -- threads -------------------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        *,
        thread_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        if_exists: str = "raise",
    ) -> ThreadView:
        """A new, empty thread (`metadata.graph_id` names its workflow, else its first run does). An id
        that is taken is THREAD_EXISTS, or with `if_exists="do_nothing"` that thread."""
        caller.require("submit")
        thread_id = check_job_id(thread_id) if thread_id else str(uuid.uuid4())
        metadata = dict(metadata or {})
        graph_id = metadata.get("graph_id")
        if graph_id is not None:
            get_workflow(str(graph_id))
        now = utcnow()
        row = Thread(
            id=thread_id, tenant=caller.tenant, graph_id=graph_id, meta=metadata, staged=[],
            created_at=now, updated_at=now,
        )  # fmt: skip
        taken = await self._exists(thread_id) or not await self.store.create_thread(row)
        if taken:
            if if_exists == "do_nothing":
                return await self.get(caller, thread_id)  # another tenant's: THREAD_NOT_FOUND
            raise AdgraphError("THREAD_EXISTS", f"thread {thread_id} exists", thread_id=thread_id)
        return _view(row, [])

    async def _exists(self, thread_id: str) -> bool:
        try:
            await self.store.get(thread_id)
        except AdgraphError:
            return False
        return True

    async def get(self, caller: Caller, thread_id: str) -> ThreadView:
        """The thread, if `caller` may see it: another tenant's is THREAD_NOT_FOUND, like one that does
        not exist."""
        caller.require("read")
        thread_id = _thread_id(thread_id)
        row = await self.store.thread(thread_id)
        if row is not None:
            if not caller.sees(row.tenant):
                raise _not_found(thread_id)
            return _view(row, await self.store.thread_jobs(thread_id))
        jobs = await self.store.thread_jobs(thread_id)
        if not jobs or not caller.sees(jobs[0].tenant):
            raise _not_found(thread_id)
        return _lone(jobs[0])

    async def search(
        self,
        caller: Caller,
        *,
        graph_id: str | None = None,
        status: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[ThreadView]:
        """Newest first (by last change): the threads made here and every job of another door (each a
        thread of its own), filtered by graph, status and metadata (each given key equal)."""
        caller.require("read")
        tenant = None if caller.admin else caller.tenant
        want = offset + limit
        filters = dict(metadata or {})
        graph_id = graph_id or filters.pop("graph_id", None)
        rows = await self.store.threads(tenant, graph_id, want * 4 if (status or filters) else want)
        lone = await self.store.lone_jobs(tenant, graph_id, want * 4 if (status or filters) else want)
        views = [_view(r, await self.store.thread_jobs(r.id)) for r in rows] + [_lone(j) for j in lone]
        views.sort(key=lambda v: v.updated_at, reverse=True)
        if status:
            views = [v for v in views if v.status == status]
        if filters:
            views = [v for v in views if all(v.metadata.get(k) == val for k, val in filters.items())]
        return views[offset:want]

    async def update(self, caller: Caller, thread_id: str, metadata: dict[str, Any]) -> ThreadView:
        """Merge `metadata` into the thread's own."""
        caller.require("submit")
        view = await self._stored(caller, thread_id)
        row = await self.store.thread(view.id)
        assert row is not None
        await self.store.update_thread(view.id, meta={**row.meta, **metadata})
        return await self.get(caller, view.id)

    async def delete(self, caller: Caller, thread_id: str) -> None:
        """Delete the thread and its jobs (as `Jobs.delete` does); one that is busy is THREAD_BUSY."""
        view = await self.get(caller, thread_id)
        caller.require("submit")
        if view.status == "busy":
            raise _busy(view)
        for job in view.jobs:
            if job.status in FINISHED:
                await self.jobs.delete(caller, job.id)
        await self.store.delete_thread(view.id)

    async def _stored(self, caller: Caller, thread_id: str) -> ThreadView:
        """The thread, given its row if it is a job's own so far (its job put on it)."""
        view = await self.get(caller, thread_id)
        if not view.stored:
            job = view.jobs[0]
            row = Thread(
                id=view.id, tenant=job.tenant, graph_id=job.workflow, meta={}, staged=[],
                created_at=job.created_at, updated_at=utcnow(),
            )  # fmt: skip
            await self.store.create_thread(row)  # False: made meanwhile by another request, just as good
            await self.store.update(job.id, thread_id=view.id)
            view = await self.get(caller, view.id)
        return view

    # -- state ---------------------------------------------------------------------------------------

    async def state(self, caller: Caller, thread_id: str, checkpoint_id: str | None = None) -> ThreadState:
        """The thread's newest checkpoint (of its last job), or the one with `checkpoint_id` in any of its
        jobs (a staged fork: the checkpoint it forks from, with its changes)."""
        view = await self.get(caller, thread_id)
        if checkpoint_id is None:
            if view.head is None:
                return ThreadState(view.id, None, None)
            points = await self.jobs.checkpoints(caller, view.head.id, with_values=True)
            return ThreadState(view.id, view.head, points[-1] if points else None)
        if (staged := _staged(view, checkpoint_id)) is not None:
            job = await self.jobs.get(caller, staged["job_id"])
            source = await self.jobs.checkpoint(caller, job.id, staged["source"])
            values = {**(source.values or {}), **staged["values"]}
            return ThreadState(view.id, job, Checkpoint(source.info, source.preview, values))
        for job in reversed(view.jobs):
            for point in await self.jobs.checkpoints(caller, job.id, with_values=True):
                if point.info.id == checkpoint_id:
                    return ThreadState(view.id, job, point)
        raise AdgraphError("CHECKPOINT_NOT_FOUND", f"thread {view.id} has no checkpoint {checkpoint_id!r}")

    async def history(
        self, caller: Caller, thread_id: str, *, limit: int = 10, before: str | None = None
    ) -> list[ThreadState]:
        """The checkpoints of every job of the thread, newest first; `before` a checkpoint id: only those
        after it in that order."""
        view = await self.get(caller, thread_id)
        out: list[ThreadState] = []
        for job in reversed(view.jobs):
            points = await self.jobs.checkpoints(caller, job.id, with_values=True)
            out += [ThreadState(view.id, job, p) for p in reversed(points)]
        if before is not None:
            ids = [s.checkpoint.info.id for s in out if s.checkpoint]
            if before not in ids:
                raise AdgraphError("CHECKPOINT_NOT_FOUND", f"thread {view.id} has no checkpoint {before!r}")
            out = out[ids.index(before) + 1 :]
        return out[:limit]

    async def stage(
        self,
        caller: Caller,
        thread_id: str,
        *,
        values: dict[str, Any] | None,
        as_node: str | None = None,
        checkpoint_id: str | None = None,
    ) -> str:
        """Stage a fork of the checkpoint `checkpoint_id` (default: the thread's newest) with `values` as
        the changes of its input (`as_node="__copy__"`: none); the next run with the returned checkpoint id
        (or with no input and no checkpoint) runs it. The changes are checked when it runs."""
        caller.require("submit")
        view = await self._stored(caller, thread_id)
        state = await self.state(caller, view.id, checkpoint_id)
        if state.job is None or state.checkpoint is None:
            raise AdgraphError(
                "CHECKPOINT_NOT_FOUND", f"thread {view.id} has no checkpoint yet: start a run with input"
            )
        wf = WORKFLOWS[state.job.workflow]
        changes = dict(values or {})
        if unknown := sorted(set(changes) - set(wf.branch_fields)):
            raise AdgraphError(
                "INVALID_INPUT",
                f"cannot change {', '.join(unknown)} in a fork of {wf.name}; change one of "
                f"{', '.join(wf.branch_fields)}",
                fields=unknown,
            )
        if (earlier := _staged(view, state.checkpoint.info.id)) is not None:  # a fork of a staged fork
            source, changes = earlier["source"], {**earlier["values"], **changes}
        else:
            source = state.checkpoint.info.id
        staged_id = str(uuid.uuid4())
        entry = {
            "checkpoint_id": staged_id,
            "job_id": state.job.id,
            "source": source,
            "values": changes,
            "as_node": as_node,
        }
        await self.store.update_thread(view.id, staged=[*view.staged, entry])
        return staged_id

    # -- runs ----------------------------------------------------------------------------------------

    async def start(
        self,
        caller: Caller,
        thread_id: str,
        workflow: str,
        *,
        input: dict[str, Any] | None,
        checkpoint_id: str | None = None,
        multitask: str = "enqueue",
        if_not_exists: str = "reject",
    ) -> Job:
        """Start a run on the thread: a new job (see the module's docstring for which)."""
        caller.require("submit")
        if multitask not in MULTITASK:
            raise AdgraphError(
                "INVALID_INPUT",
                f"multitask_strategy {multitask!r} is not supported; use one of {', '.join(MULTITASK)}",
                field="multitask_strategy",
            )
        try:
            view = await self._stored(caller, thread_id)
        except AdgraphError as e:
            if e.code != "THREAD_NOT_FOUND" or if_not_exists != "create":
                raise
            await self.create(caller, thread_id=thread_id, metadata={"graph_id": workflow})
            view = await self.get(caller, thread_id)
        if view.graph_id not in (None, workflow):
            raise AdgraphError(
                "INVALID_INPUT",
                f"thread {view.id} runs {view.graph_id}, not {workflow}",
                field="assistant_id",
            )
        if multitask == "reject" and view.status == "busy":
            raise _busy(view)
        staged = _staged(view, checkpoint_id) if checkpoint_id else None
        if staged is None and checkpoint_id is None and input is None and view.staged:
            staged = view.staged[-1]  # `update_state` then a run with nothing: run what was staged
        if staged is not None:
            job = await self.jobs.branch(
                caller,
                staged["job_id"],
                checkpoint_id=staged["source"],
                changes={**staged["values"], **(input or {})},
                thread_id=view.id,
                same_input=True,
            )
            left = [s for s in view.staged if s["checkpoint_id"] != staged["checkpoint_id"]]
            await self.store.update_thread(view.id, staged=left)
        elif checkpoint_id is not None:
            job = await self.jobs.branch(
                caller,
                await self._owner(caller, view, checkpoint_id),
                checkpoint_id=checkpoint_id,
                changes=input or {},
                thread_id=view.id,
                same_input=True,
            )
        elif input is not None:
            base = view.head.input if view.head is not None and view.head.workflow == workflow else {}
            job = await self.jobs.submit(caller, workflow, {**base, **input}, thread_id=view.id)
        elif view.head is None:
            raise AdgraphError(
                "INVALID_INPUT",
                f"thread {view.id} has no job yet: its first run needs an input",
                field="input",
            )
        else:  # nothing new: carry on from where the thread's last job stopped
            job = await self.jobs.resume(caller, view.head.id)
        await self.store.update_thread(view.id, graph_id=workflow)
        return job

    async def _owner(self, caller: Caller, view: ThreadView, checkpoint_id: str) -> str:
        """The job of the thread that holds `checkpoint_id`."""
        for job in reversed(view.jobs):
            if any(p.info.id == checkpoint_id for p in await self.jobs.checkpoints(caller, job.id)):
                return job.id
        raise AdgraphError("CHECKPOINT_NOT_FOUND", f"thread {view.id} has no checkpoint {checkpoint_id!r}")

    async def run(self, caller: Caller, thread_id: str, run_id: str) -> Job:
        """The run (job) `run_id` of this thread; one of another thread is JOB_NOT_FOUND."""
        view = await self.get(caller, thread_id)
        for job in view.jobs:
            if job.id == run_id:
                return job
        raise AdgraphError("JOB_NOT_FOUND", f"thread {view.id} has no run {run_id!r}")

    async def runs(
        self, caller: Caller, thread_id: str, *, status: str | None = None, limit: int = 10, offset: int = 0
    ) -> list[Job]:
        """The thread's runs, newest first."""
        view = await self.get(caller, thread_id)
        runs = list(reversed(view.jobs))
        if status:
            runs = [j for j in runs if run_status(j) == status]
        return runs[offset : offset + limit]


def run_status(job: Job) -> str:
    """LangGraph's run status of a job."""
    return {
        "queued": "pending",
        "running": "running",
        "succeeded": "success",
        "failed": "error",
        "cancelled": "interrupted",
    }[job.status]


def _thread_id(thread_id: str) -> str:
    try:
        return check_job_id(thread_id)
    except AdgraphError:
        raise AdgraphError("INVALID_INPUT", f"malformed thread id {thread_id!r}: expected a UUID") from None


def _not_found(thread_id: str) -> AdgraphError:
    return AdgraphError("THREAD_NOT_FOUND", f"no thread {thread_id}")


def _busy(view: ThreadView) -> AdgraphError:
    active = [j.id for j in view.jobs if j.status in ACTIVE]
    return AdgraphError(
        "THREAD_BUSY",
        f"thread {view.id} has a run in progress; wait for it, cancel it, or send multitask_strategy "
        "'enqueue' to run after it",
        runs=active,
    )


def _staged(view: ThreadView, checkpoint_id: str | None) -> dict[str, Any] | None:
    return next((s for s in view.staged if s["checkpoint_id"] == checkpoint_id), None)


def _view(row: Thread, jobs: list[Job]) -> ThreadView:
    updated = max([row.updated_at, *(j.updated_at for j in jobs)])
    return ThreadView(
        id=row.id,
        tenant=row.tenant,
        graph_id=row.graph_id,
        metadata=dict(row.meta or {}),
        created_at=row.created_at,
        updated_at=updated,
        jobs=jobs,
        staged=list(row.staged or []),
        stored=True,
    )


def _lone(job: Job) -> ThreadView:
    """A job of another door, as a thread of its own."""
    return ThreadView(
        id=job.id,
        tenant=job.tenant,
        graph_id=job.workflow,
        metadata={},
        created_at=job.created_at,
        updated_at=job.updated_at,
        jobs=[job],
    )
