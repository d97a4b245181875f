"""The application layer: every job operation, for every workflow, written once.

REST routes, CLI commands and the doors to come (web studio, MCP, the LangGraph API) only translate their
protocol into these calls and render what comes back. A job made through any door is a row in the same
jobs table, with the same ids, events and lineage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ValidationError

from checkpoints.history import CheckpointInfo, describe, find_snapshot, seed_branch, thread_config
from checkpoints.ingest import store_photo
from checkpoints.saver import open_checkpointer
from kernel.errors import AdgraphError
from kernel.models import ArtifactRef
from service.db import Job, JobEvent, make_engine, migrate
from service.events import EventBus, EventTail
from service.runner import JobRunner, RemoteRunner, orphaned
from service.running import Listener, RunResult, new_job_id
from service.settings import Settings
from service.store import JobStore, check_job_id
from service.wiring import Components, open_components
from service.workflows import WORKFLOWS, Tools, Workflow, get_workflow, state_types

STREAM_LOOK_S = 1.0
"""How often a follower reads its job's events with no wake-up (should the `EventTail` fail)."""


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate `data`, turning pydantic's errors into one INVALID_INPUT naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, err['loc'])) or 'input'}: {err['msg']}" for err in e.errors()]
        raise AdgraphError(
            "INVALID_INPUT",
            "; ".join(problems),
            fields=[".".join(map(str, err["loc"])) for err in e.errors()],
        ) from None


@dataclass(frozen=True)
class Checkpoint:
    """A job's checkpoint: where it is in the graph, the image its node made, and (if asked) its state."""

    info: CheckpointInfo
    preview: ArtifactRef | None
    values: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


class Jobs:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        graphs: dict[str, CompiledStateGraph],
        components: Components,
        runner: JobRunner | RemoteRunner,
        bus: EventBus,
    ) -> None:
        self.settings, self.store, self.graphs = settings, store, graphs
        self.components, self.runner, self.bus = components, runner, bus

    # -- input ---------------------------------------------------------------------------------------

    def check(self, workflow: str, raw: dict[str, Any]) -> tuple[Workflow, BaseModel]:
        """The workflow and its validated input, with what it refers to checked (blocking: file lookups).
        Raises INVALID_INPUT / ARTIFACT_NOT_FOUND / INVALID_IMAGE; nothing is stored."""
        wf = get_workflow(workflow)
        return wf, wf.prepare(parse(wf.input_model, raw), self.components)

    async def upload(self, data: bytes, name: str = "upload") -> ArtifactRef:
        """Store an image (checked first: INVALID_IMAGE / IMAGE_TOO_LARGE); the same bytes, the same id."""
        return await asyncio.to_thread(
            store_photo,
            self.components.artifacts,
            data,
            max_pixels=self.settings.max_image_pixels,
            name=name,
        )

    # -- jobs ----------------------------------------------------------------------------------------

    async def submit(self, workflow: str, raw: dict[str, Any], *, run_here: bool = False) -> Job:
        """Queue a job; with `run_here`, hold it for this process to `run` (the CLI). Its input is checked
        first: a job that exists can run."""
        wf, opts = await asyncio.to_thread(self.check, workflow, raw)
        job = await self.store.create(
            new_job_id(), wf.name, opts.model_dump(mode="json"), lease=self._lease(run_here)
        )
        self.runner.wake()
        return job

    async def get(self, job_id: str) -> Job:
        return await self.store.get(job_id)

    async def list(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Newest first; pass `next_cursor` back for older pages."""
        before = _decode_cursor(cursor) if cursor else None
        jobs = await self.store.list(status=status, workflow=workflow, limit=limit + 1, before=before)
        nxt = _encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
        return JobPage(jobs[:limit], nxt)

    async def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one at its next node boundary (or diffusion step)."""
        job = await self.store.get(job_id)
        if await self.store.transition(job.id, ["queued"], status="cancelled"):
            await self.runner.emit(job.id, "job_finished", {"status": "cancelled"})
        elif await self.store.transition(job.id, ["running"], cancel_requested=True):
            self.runner.cancel_running(job.id)
        else:
            raise AdgraphError(
                "JOB_NOT_CANCELLABLE",
                f"job {job.id} is {job.status}; only queued or running jobs can be cancelled",
            )
        return await self.store.get(job.id)

    async def resume(self, job_id: str, *, run_here: bool = False) -> Job:
        """Continue a failed or cancelled job (or one whose process died) from its last checkpoint; nodes
        that finished do not run again."""
        job = await self.store.get(job_id)
        reset = {"error": None, "cancel_requested": False}
        if run_here:
            statuses = ["failed", "cancelled"] + (["running"] if _abandoned(job) else [])
            owner = self._lease(True)[0]  # type: ignore[index]
            held = await self.store.claim(
                owner, self.settings.lease_s, job_id=job.id, from_statuses=statuses, **reset
            )
            if held is not None:
                await self.runner.emit(job.id, "job_queued", {"status": "queued", "resumed": True})
                return held
        elif await self.store.transition(job.id, ["failed", "cancelled"], status="queued", **reset):
            await self.runner.emit(job.id, "job_queued", {"status": "queued", "resumed": True})
            self.runner.wake()
            return await self.store.get(job.id)
        raise AdgraphError(
            "JOB_NOT_RESUMABLE",
            f"job {job.id} is {job.status}; only failed or cancelled jobs can be resumed"
            + (" (branch a finished one instead)" if job.status == "succeeded" else ""),
        )

    async def branch(
        self,
        job_id: str,
        *,
        checkpoint_id: str | None = None,
        from_node: str | None = None,
        changes: dict[str, Any] | None = None,
        run_here: bool = False,
    ) -> Job:
        """A new job from one of this job's checkpoints (by id, or the one after `from_node`) with some
        inputs changed (`None` leaves a value as it was); this job is untouched. A change the checkpoint
        has already used (a new prompt after `background` ran) is refused, naming where to branch from."""
        job = await self.store.get(job_id)
        wf = WORKFLOWS[job.workflow]
        graph = self.graphs[wf.name]
        source = await find_snapshot(graph, job.id, wf.nodes, checkpoint_id=checkpoint_id, node=from_node)
        opts, overrides = await asyncio.to_thread(branch_input, wf, source, changes or {}, self.components)
        new_id = new_job_id()
        from_checkpoint = source.config["configurable"]["checkpoint_id"]
        parent = {"job_id": job.id, "checkpoint_id": from_checkpoint}
        await seed_branch(graph, source, new_id, wf.nodes, overrides, wf.consumers, {"parent": parent})
        child = await self.store.create(
            new_id,
            wf.name,
            opts.model_dump(mode="json"),
            parent=(job.id, from_checkpoint),
            lease=self._lease(run_here),
        )
        self.runner.wake()
        return child

    async def run(self, job: Job, observe: Listener | None = None) -> RunResult:
        """Run a job this process holds (from `submit`, `resume` or `branch` with `run_here`) to its end."""
        if not isinstance(self.runner, JobRunner):
            raise RuntimeError("this process runs no jobs")
        return await self.runner.run_claimed(job, observe)

    # -- what a job made -----------------------------------------------------------------------------

    async def checkpoints(self, job_id: str) -> list[Checkpoint]:
        """Oldest first, each with the node that wrote it and, where that node made an image, a preview."""
        job = await self.store.get(job_id)
        wf = WORKFLOWS[job.workflow]
        snaps = [s async for s in self.graphs[wf.name].aget_state_history(thread_config(job.id))]
        return [_checkpoint(wf, s) for s in reversed(snaps)]

    async def checkpoint(self, job_id: str, checkpoint_id: str) -> Checkpoint:
        """One checkpoint with the state as it was there (images as artifact references)."""
        job = await self.store.get(job_id)
        wf = WORKFLOWS[job.workflow]
        snap = await find_snapshot(self.graphs[wf.name], job.id, wf.nodes, checkpoint_id=checkpoint_id)
        return _checkpoint(wf, snap, with_values=True)

    async def final_state(self, job_id: str) -> tuple[Workflow, dict[str, Any]]:
        """A job's workflow and its newest state (what result files are written from)."""
        job = await self.store.get(job_id)
        wf = WORKFLOWS[job.workflow]
        snap = await self.graphs[wf.name].aget_state(thread_config(job.id))
        return wf, dict(snap.values)

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events after id `after`, then each new one as it is written, until the job finishes."""
        job = await self.store.get(job_id)
        wake = self.bus.subscribe(job.id)  # subscribe first, then replay: nothing falls in between
        try:
            last, finished = after, False
            replay = await self.store.events(job.id, after)
            for ev in replay:
                last = ev.id
                yield ev
                finished = ev.type == "job_finished"  # a resumed job goes on after an earlier end
            if not replay and after:  # a reconnect after the job's end
                latest = await self.store.latest_event(job.id)
                finished = latest is not None and latest.type == "job_finished"
            while not finished:
                # The database is the one ordered record of a job's events; the bus only says "look now".
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=STREAM_LOOK_S)
                wake.clear()
                for ev in await self.store.events(job.id, last):
                    last = ev.id
                    yield ev
                    if ev.type == "job_finished":
                        finished = True
                        break
        finally:
            self.bus.unsubscribe(job.id, wake)

    def _lease(self, run_here: bool) -> tuple[str, float] | None:
        if not run_here:
            return None
        if not isinstance(self.runner, JobRunner):
            raise RuntimeError("this process runs no jobs")
        return (self.runner.owner, self.settings.lease_s)


def branch_input(
    wf: Workflow, source: Any, changes: dict[str, Any], tools: Tools
) -> tuple[BaseModel, dict[str, Any]]:
    """A branch's validated input (the source checkpoint's, with `changes`; `None` leaves a value as it
    was) and the state keys it changes there (blocking: file lookups)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if unknown := sorted(set(changes) - set(wf.branch_fields)):
        raise AdgraphError(
            "INVALID_INPUT",
            f"cannot change {', '.join(unknown)} in a branch of {wf.name}; change one of "
            f"{', '.join(wf.branch_fields)}",
            fields=unknown,
        )
    if describe(source, wf.nodes).node in ("__input__", "__start__"):
        raise AdgraphError("INVALID_INPUT", "that checkpoint is before any node ran: start a new job instead")
    opts = wf.prepare(parse(wf.input_model, {**wf.input_of(source.values), **changes}), tools)
    state = wf.graph_input(opts, tools)
    return opts, {k: v for k, v in state.items() if source.values.get(k) != v}


def _abandoned(job: Job) -> bool:
    """A job marked running whose process is gone (its lease ran out, or its owner died on this machine)."""
    expired = job.lease_expires_at is None or job.lease_expires_at < dt.datetime.now(dt.UTC)
    return job.status == "running" and (expired or orphaned(job.lease_owner or ""))


def _checkpoint(wf: Workflow, snap: Any, *, with_values: bool = False) -> Checkpoint:
    info = describe(snap, wf.nodes)
    key = wf.previews.get(info.node)
    preview = snap.values.get(key) if key else None
    return Checkpoint(info, preview, dict(snap.values) if with_values else None)


def _encode_cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(json.dumps([job.created_at.isoformat(), job.id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return dt.datetime.fromisoformat(created), check_job_id(job_id)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise AdgraphError("INVALID_INPUT", "malformed cursor: pass next_cursor back as it came") from None


@asynccontextmanager
async def open_service(
    settings: Settings,
    *,
    run_jobs: bool = True,
    evaluations: bool = True,
    worker: bool = False,
    idle_poll_s: float = 1.0,
    components: Any = None,
) -> AsyncIterator[Jobs]:
    """The job service over `settings`' database and checkpoints, closed on exit.

    `run_jobs`: this process has the job backends. `worker`: it also takes queued jobs (the API's
    in-process runner, `adgraph worker`, looking for work every `idle_poll_s` when nothing wakes it);
    without, it runs only the jobs it holds itself (the CLI).
    `components(settings, run_jobs=…, evaluations=…)`: an async context manager in place of the real one
    (tests wrap it to hold or break a backend)."""
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database)
        stack.push_async_callback(engine.dispose)
        await migrate(engine)
        saver = await stack.enter_async_context(open_checkpointer(settings.checkpoints, state_types()))
        opener = components or open_components
        parts = await stack.enter_async_context(opener(settings, run_jobs=run_jobs, evaluations=evaluations))
        graphs = {name: wf.build(saver) for name, wf in WORKFLOWS.items()}
        store, bus = JobStore(engine), EventBus()
        stack.callback(store.close)
        # Wakes followers for events written elsewhere (worker processes, another CLI).
        tail = EventTail(bus, store.latest_event_ids)
        tail.start()
        stack.push_async_callback(tail.stop)
        runner: JobRunner | RemoteRunner
        if run_jobs:
            # The runner gets its own connections: its lease renewals and progress writes must not queue
            # behind a burst of API reads.
            runner_engine = make_engine(settings.database)
            stack.push_async_callback(runner_engine.dispose)
            runner_store = JobStore(runner_engine)
            stack.callback(runner_store.close)
            runner = JobRunner(
                runner_store,
                WORKFLOWS,
                graphs,
                parts.contexts,
                bus,
                parts,
                concurrency=settings.max_concurrent_jobs,
                lease_s=settings.lease_s,
                idle_poll_s=idle_poll_s,
            )
        else:
            runner = RemoteRunner(store, bus)
        if worker and isinstance(runner, JobRunner):
            await runner.start()
            stack.push_async_callback(runner.stop)
        yield Jobs(settings, store, graphs, parts, runner, bus)
