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
import hashlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ValidationError

from checkpoints.history import CheckpointInfo, describe, find_snapshot, seed_branch, thread_config
from checkpoints.ingest import store_photo
from checkpoints.saver import open_checkpointer
from kernel.errors import AdgraphError
from kernel.models import ArtifactRef, artifact_refs
from service.accounts import Accounts, Caller, RateLimiter
from service.db import IdempotentResponse, Job, JobEvent, make_engine, migrate
from service.events import EventBus, EventTail
from service.queue import deferring_only, make_queue
from service.runner import JobRunner, RemoteRunner
from service.running import Listener, RunResult, new_job_id
from service.settings import Settings
from service.store import JobStore, check_job_id
from service.wiring import Components, open_components
from service.workflows import WORKFLOWS, Tools, Workflow, get_workflow, state_types

PENDING = 0
"""The status of a reserved idempotent request not answered yet."""
IDEMPOTENCY_WAIT_S = 10.0
"""How long a copy of a request waits for the first copy's answer before IDEMPOTENCY_IN_PROGRESS."""
ABANDONED = dt.timedelta(minutes=5)
"""A reservation older than this was left by a process that died answering it: taken over."""
IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)
"""How long the first answer to a request with an Idempotency-Key is replayed."""
STREAM_LOOK_S = 1.0
"""How often a follower reads its job's events with no wake-up (should the `EventTail` fail)."""
FINISHED = ("succeeded", "failed", "cancelled")
"""The jobs that may be deleted (a queued or running one is cancelled first)."""
SWEEP_BATCH = 200
RECENT_WRITE_S = 3600.0
"""A file unreferenced by the sweep's reckoning but written within this is kept: a running job may have
made the same bytes and not recorded them yet."""

log = logging.getLogger("adgraph.retention")


def parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate `data`, turning pydantic's errors into one INVALID_INPUT naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid_input(e.errors()) from None


MAX_PROBLEMS = 20
"""An error names at most this many bad fields (60,000 unknown keys must not make a 3 MB answer)."""


PRIORITIES = range(-10, 11)


def check_priority(priority: int) -> int:
    """A job's priority: an integer from -10 to 10 (0 the default), else INVALID_INPUT."""
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITIES:
        raise AdgraphError(
            "INVALID_INPUT", f"priority must be an integer from -10 to 10, not {priority!r}", field="priority"
        )
    return priority


def invalid_input(errors: Sequence[Mapping[str, Any]]) -> AdgraphError:
    """One INVALID_INPUT for pydantic's `errors`, naming the first MAX_PROBLEMS bad fields (each cut to
    a readable length) and counting the rest."""
    fields = [".".join(map(str, err["loc"]))[:100] or "input" for err in errors]
    problems = [f"{f}: {err['msg']}"[:300] for f, err in zip(fields, errors, strict=True)]
    more = len(errors) - MAX_PROBLEMS
    message = "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more problems" if more > 0 else "")
    details: dict[str, Any] = {"fields": fields[:MAX_PROBLEMS]}
    if more > 0:
        details["more_fields"] = more
    return AdgraphError("INVALID_INPUT", message, **details)


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
        self.draining = False
        """Set by `drain` (SIGTERM): /readyz answers 503 so load balancers stop sending work here."""
        self.accounts = Accounts(store, settings)
        self.limiter = RateLimiter(settings.rate_limit_storage, settings.rate_limit)
        self._admission: dict[str, asyncio.Lock] = {}  # per key with a quota: see _admitted
        self._streams: dict[str, int] = {}  # event streams open per key: see stream_slot

    # -- callers -------------------------------------------------------------------------------------

    async def authenticate(self, key: str | None) -> Caller:
        """The caller a request with `key` acts as, counted against its key's rate (UNAUTHENTICATED,
        RATE_LIMITED). Every door that takes requests from the network starts here."""
        caller = await self.accounts.authenticate(key)
        await self.limiter.hit(caller)
        return caller

    async def _job(self, caller: Caller, job_id: str, scope: str) -> Job:
        """The job, if `caller` may see it and has `scope`; another tenant's job is JOB_NOT_FOUND, exactly
        like one that does not exist (no existence oracle)."""
        caller.require(scope)
        job = await self.store.get(job_id)
        if not caller.sees(job.tenant):
            raise AdgraphError("JOB_NOT_FOUND", f"no job {job.id}")
        return job

    async def artifact(self, caller: Caller, artifact_id: str) -> ArtifactRef:
        """A stored file `caller` may see (it uploaded it, or one of its jobs made or used it)."""
        caller.require("read")
        self.components.artifacts.path(artifact_id)  # a malformed id is INVALID_INPUT, never a look-up
        # who may see it is asked first: another tenant's file costs no disk look-up (no timing oracle)
        if not caller.admin and not await self.store.sees_artifact(caller.tenant, artifact_id):
            raise AdgraphError("ARTIFACT_NOT_FOUND", f"no artifact {artifact_id}")
        return await asyncio.to_thread(self.components.artifacts.find, artifact_id)

    # -- input ---------------------------------------------------------------------------------------

    async def upload(self, caller: Caller, data: bytes, name: str = "upload") -> ArtifactRef:
        """Store an image (checked first: INVALID_IMAGE / IMAGE_TOO_LARGE); the same bytes, the same id.
        Only `caller`'s tenant sees it, even if another uploaded the same bytes."""
        caller.require("submit")
        ref = await asyncio.to_thread(
            store_photo,
            self.components.artifacts,
            data,
            max_pixels=self.settings.max_image_pixels,
            name=name,
        )
        await self.store.grant(caller.tenant, [ref], uploaded=True)  # kept after the jobs that use it
        return ref

    async def once(
        self,
        caller: Caller,
        route: str,
        key: str | None,
        request: Any,
        answer: Callable[[], Awaitable[tuple[int, Any]]],
    ) -> tuple[int, Any]:
        """`answer()` → (status, JSON body), unless the same caller sent this `key` for `route` in the last
        24 h: then the first (status, body) again, and nothing is done twice. The same key with another
        request is INVALID_INPUT (a client bug that would otherwise pass silently)."""
        if key is None:
            return await answer()
        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise AdgraphError("INVALID_INPUT", "Idempotency-Key must be 1-255 printable characters")
        owner = caller.key_id or "-"
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + IDEMPOTENCY_WAIT_S
        while True:
            now = dt.datetime.now(dt.UTC)
            first = await self.store.first_response(owner, route, key, now - IDEMPOTENCY_WINDOW)
            if first is None:
                # the request is reserved before it is answered: a copy sent meanwhile waits for this answer
                pending = IdempotentResponse(
                    key_id=owner, route=route, idempotency_key=key, request_hash=digest,
                    status_code=PENDING, body={}, created_at=now,
                )  # fmt: skip
                if await self.store.keep_response(
                    pending, expired_before=now - IDEMPOTENCY_WINDOW, abandoned_before=now - ABANDONED
                ):
                    return await self._answer_reserved(owner, route, key, answer)
                continue  # another copy reserved it first: read its row
            if first.request_hash != digest:
                raise AdgraphError(
                    "INVALID_INPUT",
                    "this Idempotency-Key was used with a different request in the last 24 h; use a new key",
                )
            if first.status_code != PENDING:
                return first.status_code, first.body
            if loop.time() > deadline:
                raise AdgraphError(
                    "IDEMPOTENCY_IN_PROGRESS",
                    "a request with this Idempotency-Key is still being answered; send it again shortly",
                    retry_after=1,
                )
            await asyncio.sleep(0.02)  # the first copy is being answered (a few ms: a check and a row)

    async def _answer_reserved(
        self, owner: str, route: str, key: str, answer: Callable[[], Awaitable[tuple[int, Any]]]
    ) -> tuple[int, Any]:
        try:
            status, body = await answer()
        except BaseException:  # nothing was done: a repeat may try again (a refusal is refused again)
            await asyncio.shield(self.store.forget_response(owner, route, key))
            raise
        await asyncio.shield(self.store.complete_response(owner, route, key, status, body))
        return status, body

    # -- jobs ----------------------------------------------------------------------------------------

    async def submit(
        self,
        caller: Caller,
        workflow: str,
        raw: dict[str, Any],
        *,
        run_here: bool = False,
        thread_id: str | None = None,
        priority: int = 0,
    ) -> Job:
        """Queue a job; with `run_here`, hold it for this process to `run` (the CLI). Its input is checked
        first — a job that exists can run — and so are the key's quota and the queue's depth. On a
        `thread_id` (service/threads.py) it runs after the thread's earlier jobs. A higher `priority`
        (-10..10) is taken before the jobs queued earlier with a lower one."""
        caller.require("submit")
        wf = get_workflow(workflow)
        opts = parse(wf.input_model, raw)
        # the caller's right to each file it names before anything is learnt from the file (its type, size)
        inputs = [(await self.artifact(caller, artifact_id)).id for artifact_id in wf.artifacts_of(opts)]
        opts = await asyncio.to_thread(wf.prepare, opts, self.components)
        job_id, variants = new_job_id(), wf.variants(opts)
        n = max(1, len(variants))
        async with self._admitted(caller, run_here, n, f"{n} variants" if variants else ""):
            job = await self.store.create(
                job_id,
                wf.name,
                opts.model_dump(mode="json"),
                lease=self._lease(run_here),
                tenant=caller.tenant,
                key_id=caller.key_id,
                artifact_ids=inputs,  # its files are its own before it runs (a delete or sweep keeps them)
                thread_id=thread_id,
                priority=check_priority(priority),
                # several copies or sizes: this job is variant 0, the others are branched from it and from
                # each other as they finish (service/variants.py); the key's quota holds room for all
                variant=(job_id, 0, True) if variants else None,
            )
        if not run_here:
            await self.runner.enqueue(job)
        return job

    @asynccontextmanager
    async def _admitted(
        self, caller: Caller, run_here: bool, n: int = 1, what: str = ""
    ) -> AsyncIterator[None]:
        """Room for `n` more jobs of `caller` (all of them or none), held while the body stores them: its
        key's quota (QUOTA_EXCEEDED) and the queue's depth (QUEUE_FULL, not for jobs this process runs
        itself). Submit, branch, resume and batches all ask; `what` names a group of jobs ("a batch of
        3") in the refusal. A key's submissions are admitted one at a time, so concurrent ones cannot all
        see room for the last slot (in this process: one API process per database until the queue moves
        onto a shared engine)."""
        if caller.max_running is None or caller.key_id is None:
            await self._queue_room(run_here, n, what)  # no quota: nothing to count under a lock
            yield
            return
        async with self._admission.setdefault(caller.key_id, asyncio.Lock()):
            active = await self.store.active_of_key(caller.key_id)
            if active + n > caller.max_running:
                raise AdgraphError(
                    "QUOTA_EXCEEDED",
                    f"this key has {active} jobs queued or running and may have {caller.max_running}"
                    + (f"; {what} does not fit (ask for fewer, or when jobs end)" if what else "")
                    + "; submit again when one ends",
                    max_running=caller.max_running,
                    active=active,
                    retry_after=5,
                )
            await self._queue_room(run_here, n, what)
            yield

    async def _queue_room(self, run_here: bool, n: int = 1, what: str = "") -> None:
        if not run_here and await self.store.queued() + n > self.settings.max_queue:
            raise AdgraphError(
                "QUEUE_FULL",
                f"{self.settings.max_queue} jobs may wait (ADGRAPH_MAX_QUEUE)"
                + (f"; {what} does not fit" if what else "")
                + "; try again shortly",
                retry_after=30,
            )

    async def get(self, caller: Caller, job_id: str) -> Job:
        return await self._job(caller, job_id, "read")

    async def list(
        self,
        caller: Caller,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """The caller's tenant's jobs (every tenant's for admin), newest first; pass `next_cursor` back for
        older pages."""
        caller.require("read")
        before = _decode_cursor(cursor) if cursor else None
        tenant = None if caller.admin else caller.tenant
        jobs = await self.store.list(
            status=status, workflow=workflow, limit=limit + 1, before=before, tenant=tenant
        )
        nxt = _encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
        return JobPage(jobs[:limit], nxt)

    async def cancel(self, caller: Caller, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one at its next node boundary (or diffusion step)."""
        job = await self._job(caller, job_id, "submit")
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

    async def resume(self, caller: Caller, job_id: str, *, run_here: bool = False) -> Job:
        """Continue a failed or cancelled job, or one whose runner is gone (killed, its lease lapsed), from
        its last checkpoint; nodes that finished do not run again. With `run_here` this process runs it."""
        job = await self._job(caller, job_id, "submit")
        reset = {"error": None, "cancel_requested": False}
        resumable = ["failed", "cancelled"]
        # a stale running one is counted already; a failed or cancelled one takes a slot again
        admitted = self._admitted(caller, run_here) if job.status in resumable else contextlib.nullcontext()
        async with admitted:
            if run_here:
                owner = self._lease(True)[0]  # type: ignore[index]
                held = await self.store.claim(
                    owner,
                    self.settings.lease_s,
                    job_id=job.id,
                    from_statuses=resumable,
                    or_stale=True,
                    **reset,
                )
                if held is not None:  # its `job_started` event says it runs again
                    return held
            elif await self.store.transition(job.id, resumable, or_stale=True, status="queued", **reset):
                await self.runner.emit(job.id, "job_queued", {"status": "queued", "resumed": True})
                queued = await self.store.get(job.id)
                await self.runner.enqueue(queued)
                return queued
        raise AdgraphError(
            "JOB_NOT_RESUMABLE",
            f"job {job.id} is {job.status}; only failed or cancelled jobs (or a running one whose runner is "
            "gone) can be resumed"
            + (" (branch a finished one instead)" if job.status == "succeeded" else ""),
        )

    async def branch(
        self,
        caller: Caller,
        job_id: str,
        *,
        checkpoint_id: str | None = None,
        from_node: str | None = None,
        changes: dict[str, Any] | None = None,
        run_here: bool = False,
        thread_id: str | None = None,
        same_input: bool = False,
        variant: tuple[str, int, bool] | None = None,
    ) -> Job:
        """A new job from one of this job's checkpoints (by id, or the one after `from_node`) with some
        inputs changed; this job is untouched. A change the checkpoint
        has already used (a new prompt after `background` ran) is refused, naming where to branch from.
        The new job belongs to the source job's tenant. `same_input`: no change is needed (the nodes after
        the checkpoint run again on the same state: LangGraph's fork of a checkpoint as it is).
        `thread_id`: the thread it runs on, after that thread's earlier jobs. `variant`: it is one of the
        variants a job asked for (`store.create`), admitted with that job."""
        job = await self._job(caller, job_id, "submit")
        wf = WORKFLOWS[job.workflow]
        graph = self.graphs[wf.name]
        source = await _snapshot(graph, job, wf, checkpoint_id=checkpoint_id, node=from_node)
        opts, overrides = await asyncio.to_thread(
            branch_input, wf, source, changes or {}, self.components, same_input
        )
        new_id = new_job_id()
        from_checkpoint = source.config["configurable"]["checkpoint_id"]
        parent = {"job_id": job.id, "checkpoint_id": from_checkpoint}
        async with self._admitted(caller, run_here) if variant is None else contextlib.nullcontext():
            await seed_branch(graph, source, new_id, wf.nodes, overrides, wf.consumers, {"parent": parent})
            child = await self.store.create(
                new_id,
                wf.name,
                opts.model_dump(mode="json"),
                parent=(job.id, from_checkpoint),
                lease=self._lease(run_here),
                tenant=job.tenant,
                key_id=caller.key_id,
                # the files of the state it starts from are its own: deleting its parent keeps them
                artifact_ids=[r.id for r in artifact_refs({**source.values, **overrides})],
                thread_id=thread_id,
                priority=job.priority,
                variant=variant,
            )
        if not run_here:
            await self.runner.enqueue(child)
        return child

    async def delete(self, caller: Caller, job_id: str) -> None:
        """Remove a finished job: its checkpoints, events and row, and its files that no other job of its
        tenant refers to and that the tenant did not upload itself (a file nobody holds any more leaves the
        disk). Jobs branched from it keep theirs. A queued or running job is JOB_NOT_DELETABLE."""
        job = await self._job(caller, job_id, "submit")
        await self._delete(job)

    async def _delete(self, job: Job) -> int:
        """`delete` without the caller's checks; how many files left the disk."""
        artifact_ids = await self.store.delete_job(job.id, FINISHED)
        if artifact_ids is None:
            current = await self.store.get(job.id)  # JOB_NOT_FOUND if deleted meanwhile
            raise AdgraphError(
                "JOB_NOT_DELETABLE",
                f"job {job.id} is {current.status}; cancel it first (only finished jobs can be deleted)",
                status=current.status,
            )
        saver = self.graphs[job.workflow].checkpointer
        assert isinstance(saver, BaseCheckpointSaver)
        await saver.adelete_thread(job.id)
        _, files = await self.store.release(tenant=job.tenant, artifact_ids=artifact_ids)
        # a file written again after the job ended is kept: a running job made the same bytes
        return await self._remove_files(files, job.updated_at.timestamp())

    async def _remove_files(self, artifact_ids: Sequence[str], unless_written_after: float) -> int:
        store = self.components.artifacts

        def remove() -> int:
            return sum(store.delete_sync(a, unless_written_after=unless_written_after) for a in artifact_ids)

        return await asyncio.to_thread(remove) if artifact_ids else 0

    async def sweep(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Delete what has outlived its TTL: finished jobs unchanged for ADGRAPH_JOB_TTL_DAYS (as `delete`
        does), and uploads older than ADGRAPH_ARTIFACT_TTL_DAYS that no job of their tenant refers to.
        Counts: jobs deleted, artifacts released (a tenant's hold on a file), files removed from disk,
        answers to idempotent requests older than 24 h forgotten."""
        now = now or dt.datetime.now(dt.UTC)
        counts = {"jobs": 0, "artifacts": 0, "files": 0}
        if self.settings.job_ttl_days is not None:
            cutoff = now - dt.timedelta(days=self.settings.job_ttl_days)
            while batch := await self.store.finished_before(cutoff, FINISHED, SWEEP_BATCH):
                for job in batch:
                    try:
                        counts["files"] += await self._delete(job)
                    except AdgraphError:  # resumed or deleted meanwhile
                        continue
                    counts["jobs"] += 1
                if len(batch) < SWEEP_BATCH:
                    break
        ttl = self.settings.artifact_ttl_days
        uploaded_before = now - dt.timedelta(days=ttl) if ttl is not None else None
        while True:  # expired uploads; and any tenant's hold on a file none of its jobs refers to
            dropped, files = await self.store.release(uploaded_before=uploaded_before, limit=SWEEP_BATCH)
            counts["artifacts"] += dropped
            counts["files"] += await self._remove_files(files, now.timestamp() - RECENT_WRITE_S)
            if not dropped:
                break
        counts["idempotent_responses"] = await self.store.purge_responses(now - IDEMPOTENCY_WINDOW)
        return counts

    async def sweep_every(self, interval_s: float) -> None:
        """`sweep` now and every `interval_s` until cancelled (a worker's task); a failed pass is logged and
        tried again at the next."""
        while True:
            try:
                counts = await self.sweep()
                if any(counts.values()):
                    log.info("retention sweep: %s", counts)
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(interval_s)

    async def run(self, job: Job, observe: Listener | None = None) -> RunResult:
        """Run a job this process holds (from `submit`, `resume` or `branch` with `run_here`) to its end."""
        if not isinstance(self.runner, JobRunner):
            raise RuntimeError("this process runs no jobs")
        return await self.runner.run_claimed(job, observe)

    # -- what a job made -----------------------------------------------------------------------------

    async def checkpoints(
        self, caller: Caller, job_id: str, *, with_values: bool = False
    ) -> list[Checkpoint]:
        """Oldest first, each with the node that wrote it and, where that node made an image, a preview
        (and with `with_values`, the state there)."""
        job = await self._job(caller, job_id, "read")
        wf = WORKFLOWS[job.workflow]
        snaps = [s async for s in self.graphs[wf.name].aget_state_history(thread_config(job.id))]
        return [_checkpoint(wf, s, with_values=with_values) for s in reversed(snaps)]

    async def checkpoint(self, caller: Caller, job_id: str, checkpoint_id: str) -> Checkpoint:
        """One checkpoint with the state as it was there (images as artifact references)."""
        job = await self._job(caller, job_id, "read")
        wf = WORKFLOWS[job.workflow]
        snap = await _snapshot(self.graphs[wf.name], job, wf, checkpoint_id=checkpoint_id)
        return _checkpoint(wf, snap, with_values=True)

    async def final_state(self, caller: Caller, job_id: str) -> tuple[Workflow, dict[str, Any]]:
        """A job's workflow and its newest state (what result files are written from)."""
        job = await self._job(caller, job_id, "read")
        wf = WORKFLOWS[job.workflow]
        snap = await self.graphs[wf.name].aget_state(thread_config(job.id))
        return wf, dict(snap.values)

    def drain(self) -> None:
        """The server is going away (SIGTERM): readiness turns false and every event stream ends after the
        events already stored, so the server's own shutdown is not held up by them."""
        self.draining = True
        self.bus.close()

    async def events(self, caller: Caller, job_id: str, after: int = 0) -> AsyncGenerator[JobEvent, None]:
        """The job's events after id `after`, then each new one as it is written, until the job finishes
        (or the server drains: see `drain`)."""
        job = await self._job(caller, job_id, "read")
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
            while not finished and not self.bus.closed:
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

    # -- looking at a stored image (MCP's analyze_image and calculate_clip_score) ----------------------

    async def analyze_image(self, caller: Caller, artifact_id: str) -> Any:
        """What the ad's text layer would learn about a stored image (a `SceneAnalysis`): the product's box
        (from this process's segmenter), free regions, colours and brightness (the embedded measurements)."""
        from checkpoints.ingest import require_image
        from kernel.models import Box, Placement
        from nodes.backends.stats import analyze_scene

        ref = require_image(await self.artifact(caller, artifact_id), "image")
        ctx = self.components.contexts.get("ad")
        if ctx is None:
            raise AdgraphError("MODEL_UNAVAILABLE", "this process runs no jobs, so it has no segmenter")
        image = (await self.components.artifacts.open_image(ref)).convert("RGB")
        matte = await ctx.segmenter.segment(image)
        w, h = image.size
        x0, y0, x1, y1 = matte.point(lambda v: 255 if v >= 128 else 0).getbbox() or (0, 0, w, h)
        box = Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0)
        placement = Placement(scale=1.0, x=0, y=0, product_box=box, text_area=Box(x=0, y=0, w=0, h=0))
        return await asyncio.to_thread(analyze_scene, image, placement)

    async def clip_score(self, caller: Caller, artifact_id: str, text: str) -> tuple[float, str]:
        """(CLIP score of a stored image against `text`, the model's id); MODEL_UNAVAILABLE without CLIP."""
        from checkpoints.ingest import require_image

        ref = require_image(await self.artifact(caller, artifact_id), "image")
        image = await self.components.artifacts.open_image(ref)
        models = self.components.models
        score = await models.require_clip().score(image, text)
        return score, models.located["clip"].info.repo_id

    @contextlib.contextmanager
    def stream_slot(self, caller: Caller) -> Iterator[None]:
        """One of the event streams `caller`'s key may hold open at once (ADGRAPH_MAX_STREAMS_PER_KEY),
        held for the block; past the cap RATE_LIMITED, so one client opening streams in a loop cannot take
        every connection of the server. A door takes it before its stream's first byte is sent."""
        who = caller.key_id or f"tenant:{caller.tenant}"
        open_now = self._streams.get(who, 0)
        if open_now >= self.settings.max_streams_per_key:
            raise AdgraphError(
                "RATE_LIMITED",
                f"this key has {open_now} event streams open, its limit (ADGRAPH_MAX_STREAMS_PER_KEY); "
                "close one or poll the job instead",
                retry_after=5,
            )
        self._streams[who] = open_now + 1
        try:
            yield
        finally:
            if (left := self._streams[who] - 1) > 0:
                self._streams[who] = left
            else:
                del self._streams[who]

    def _lease(self, run_here: bool) -> tuple[str, float] | None:
        if not run_here:
            return None
        if not isinstance(self.runner, JobRunner):
            raise RuntimeError("this process runs no jobs")
        return (self.runner.owner, self.settings.lease_s)


def branch_input(
    wf: Workflow, source: Any, changes: dict[str, Any], tools: Tools, same_input: bool = False
) -> tuple[BaseModel, dict[str, Any]]:
    """A branch's validated input (the source checkpoint's, with `changes`: a field left out keeps its
    value, `None` clears one that may be empty) and the state keys it changes there (blocking: file
    lookups)."""
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
    overrides = {k: v for k, v in state.items() if source.values.get(k) != v}
    if not overrides and not same_input:  # it would only run the same nodes again on the same input
        raise AdgraphError(
            "INVALID_INPUT",
            f"nothing to change: the input is the same as at that checkpoint; change one of "
            f"{', '.join(wf.branch_fields)}",
            fields=list(wf.branch_fields),
        )
    return opts, overrides


async def _snapshot(graph: CompiledStateGraph, job: Job, wf: Workflow, **where: Any) -> Any:
    """`find_snapshot` of a job that exists: one that has not run yet has no checkpoint (not "no job")."""
    try:
        return await find_snapshot(graph, job.id, wf.nodes, **where)
    except AdgraphError as e:
        if e.code != "JOB_NOT_FOUND":
            raise
        raise AdgraphError(
            "CHECKPOINT_NOT_FOUND",
            f"job {job.id} has no checkpoint yet: it is {job.status} and none of its nodes has run",
            status=job.status,
        ) from None


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
    queues: Sequence[str] | None = None,
    queue: Any = None,
) -> AsyncIterator[Jobs]:
    """The job service over `settings`' database and checkpoints, closed on exit.

    `run_jobs`: this process has the job backends. `worker`: it also takes queued jobs (the API's
    in-process runner, `adgraph worker`, looking for work every `idle_poll_s` when nothing wakes it);
    without, it runs only the jobs it holds itself (the CLI). `queues`: the queues a worker takes jobs
    from (None: all). `queue`: a `service.queue.JobQueue` in place of the one the settings name (tests:
    procrastinate on its in-memory connector).
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
        queue = queue or make_queue(settings)  # procrastinate on PostgreSQL; None: the jobs table itself
        if queue is not None:
            await queue.open()
            stack.push_async_callback(queue.close)
        runner: JobRunner | RemoteRunner
        if run_jobs:
            # The runner gets its own connections: its lease renewals and progress writes must not queue
            # behind a burst of API reads.
            # No pre-ping: a runner's writes are a few per node, and one on a connection a database
            # restart broke fails its run transiently, which is retried (ADGRAPH_MAX_ATTEMPTS).
            runner_engine = make_engine(settings.database, pre_ping=False)
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
                queue=queue,
                queues=queues,
                concurrency=settings.max_concurrent_jobs,
                lease_s=settings.lease_s,
                idle_poll_s=idle_poll_s,
                max_attempts=settings.max_attempts,
                retry_backoff_s=settings.retry_backoff_s,
                grace_s=settings.worker_grace_s,
            )
        else:
            runner = RemoteRunner(store, bus, queue or deferring_only())
        service = Jobs(settings, store, graphs, parts, runner, bus)
        if isinstance(runner, JobRunner):
            from service.variants import Variants

            runner.after_success = Variants(service).spawn
        if worker and isinstance(runner, JobRunner):
            await runner.start()
            stack.push_async_callback(runner.stop)
        if worker and run_jobs and (settings.job_ttl_days or settings.artifact_ttl_days):
            sweeper = asyncio.create_task(service.sweep_every(settings.sweep_interval_s), name="sweeper")
            stack.push_async_callback(_stop, sweeper)
        yield service


async def _stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
