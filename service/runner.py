"""The job runner: takes jobs from the queue (service/queue.py), runs them, keeps their leases, retries.

The jobs table is the record; the queue delivers. Several runners (processes, machines) may share a
database: a delivery claims the job's row first, so one job runs in one place; a runner that dies stops
renewing its leases, and the reaper of any live runner puts its jobs back in the queue, where they
continue from their last checkpoint. A job whose runner was a process of this machine that no longer
exists (a server or CLI killed mid-job) is re-queued at once, without waiting for its lease. A job that
fails transiently (`kernel.errors.TRANSIENT_CODES`) is queued again after a backoff, up to
ADGRAPH_MAX_ATTEMPTS; every attempt's outcome is kept in the job's `attempt_log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import RunControl

from checkpoints.history import thread_config, written_by
from kernel.errors import TRANSIENT_CODES, AdgraphError, public
from kernel.models import artifact_refs
from service.db import Job
from service.events import EventBus
from service.observability import job_trace
from service.owners import new_owner, orphaned
from service.queue import JobQueue, LocalQueue
from service.running import Listener, RunResult, error_of, run_job
from service.store import JobStore
from service.workflows import Tools, Workflow

log = logging.getLogger("adgraph.runner")


class RemoteRunner:
    """The API process's side when jobs run in worker processes (`adgraph worker`): it hands new jobs to
    the queue; workers poll the cancel flag, and the app's `EventTail` reads the events table for its
    streams. `JobRunner` adds running them here."""

    def __init__(self, store: JobStore, bus: EventBus, queue: JobQueue) -> None:
        self.store, self.bus, self.queue = store, bus, queue

    async def enqueue(self, job: Job) -> None:
        """A job just made queued (submitted, resumed, branched, retried, put back) reaches a worker."""
        await self.queue.enqueue(job)

    def cancel_running(self, job_id: str) -> bool:
        """The worker running it sees `cancel_requested` within half a second."""
        return False

    async def emit(self, job_id: str, type_: str, data: dict[str, Any]) -> None:
        await self.store.add_event(job_id, type_, data)
        self.bus.publish(job_id)


class JobRunner(RemoteRunner):
    """Runs jobs in this process: ones the queue delivers (a worker), or ones it holds already (the CLI)."""

    def __init__(
        self,
        store: JobStore,
        workflows: dict[str, Workflow],
        graphs: dict[str, CompiledStateGraph],
        contexts: dict[str, Any],
        bus: EventBus,
        tools: Tools,
        *,
        queue: JobQueue | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int = 2,
        lease_s: float = 15.0,
        idle_poll_s: float = 1.0,
        max_attempts: int = 3,
        retry_backoff_s: float = 2.0,
        grace_s: float = 60.0,
    ) -> None:
        self.store, self.workflows, self.graphs, self.bus = store, workflows, graphs, bus
        self.contexts, self.tools = contexts, tools
        """Run context per workflow name; what turns a job's stored input into graph input."""
        self.owner = new_owner()
        self.queue: JobQueue = queue or LocalQueue(self.take_next, idle_poll_s)
        self.queues = list(queues) if queues else None
        """The queues this runner takes jobs from (`adgraph worker --queues`); None: all."""
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.max_attempts, self.retry_backoff_s, self.grace_s = max_attempts, retry_backoff_s, grace_s
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: asyncio.Task[None] | None = None
        self._controls: dict[str, RunControl] = {}
        self._typical: dict[str, tuple[float, dict[str, float]]] = {}
        self._stopping = False
        self.after_success: Callable[[Job], Awaitable[Any]] | None = None
        """Called with a job that succeeded and has variants to branch (`spawn_pending`: service/variants.py),
        after its end is stored; the reaper calls it again for any whose runner died first."""

    async def start(self) -> None:
        """Take jobs from the queue until `stop`; first put back those a dead process left running."""
        await self._requeue_stale()
        self._serving = asyncio.create_task(self._serve(), name="job-queue")
        self._tasks = [asyncio.create_task(self._reaper(), name="job-reaper")]

    async def _typical_seconds(self, workflow: str, nodes: Sequence[str]) -> dict[str, float]:
        """The nodes' usual durations for the ETA, read at most every 30 s per workflow."""
        now = time.monotonic()
        cached = self._typical.get(workflow)
        if cached is None or now - cached[0] > 30:
            cached = self._typical[workflow] = (now, await self.store.typical_seconds(workflow, nodes))
        return cached[1]

    async def _serve(self) -> None:
        """The queue's worker loop, started again if it stops on an error (the database restarted)."""
        while not self._stopping:
            try:
                await self.queue.serve(self._deliver, queues=self.queues, concurrency=self.concurrency)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s queue's worker stopped; starting it again in 1 s", self.queue.engine)
                await asyncio.sleep(1)

    @property
    def running(self) -> int:
        return len(self._controls)

    async def stop(self) -> None:
        """Stop taking jobs; the running ones stop at their next node boundary (within `grace_s`, else
        where they are) and go back to the queue for another runner, or this one's next start."""
        self._stopping = True
        for control in self._controls.values():
            control.request_drain("shutdown")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._serving is not None:
            self._serving.cancel()  # the queue stops taking work and waits for the runs it holds
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._serving), timeout=self.grace_s + 5)
            if not self._serving.done():
                self._serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._serving

    def cancel_running(self, job_id: str) -> bool:
        control = self._controls.get(job_id)
        if control is None:
            return False
        control.request_drain("cancel")
        return True

    async def take_next(self, queues: Sequence[str] | None) -> bool:
        """The local queue's pick: claim the highest-priority due job of `queues` and run it; False if
        there was none."""
        if self._stopping:
            return False
        job = await self.store.claim(self.owner, self.lease_s, queues=queues)
        if job is None:
            return False
        await self._run_guarded(job)
        return True

    async def _deliver(self, job_id: str) -> None:
        """A queue's delivery of `job_id`: claim it (queued, or left by a runner that is gone) and run it;
        a job another runner holds, or one that ended meanwhile, is not ours to run."""
        if self._stopping:  # delivered while shutting down: back to the queue for another runner
            job = await self.store.get(job_id)
            if job.status == "queued":
                await self.enqueue(job)
            return
        job = await self.store.claim(self.owner, self.lease_s, job_id=job_id, or_stale=True)
        if job is None:
            log.debug("job %s delivered but not claimable (running elsewhere or ended)", job_id)
            return
        await self._run_guarded(job)

    async def _run_guarded(self, job: Job) -> None:
        try:
            await self._run(job)
        except asyncio.CancelledError:  # stopped past the grace period: continue it elsewhere
            await asyncio.shield(self._put_back(job, "shutdown"))
            raise
        except Exception as e:  # never lose the worker; the job is retried or ends failed, with a code
            log.exception("job %s crashed the runner", job.id)
            error = error_of(e)  # a database that went away mid-run is transient
            if (wait := self._retry_in(job, error)) is not None:
                await self._retry(job, error, wait)
            else:
                await self._finish(job, "failed", error=error)

    async def _reaper(self) -> None:
        """Every few seconds: re-deliver the jobs of workers that went silent, and re-queue the jobs whose
        runner is gone (lease ran out, or a process of this machine that no longer exists)."""
        while not self._stopping:
            await asyncio.sleep(min(2.0, self.lease_s / 3))
            try:
                await self.queue.retry_stalled(self.lease_s)
                await self._requeue_stale()
                await self._spawn_pending()
            except Exception:  # the database blinked; next round
                log.debug("reaper round failed", exc_info=True)

    async def _spawn(self, job: Job) -> None:
        if self.after_success is None:
            return
        try:
            await self.after_success(job)
        except Exception:  # its variants stay pending: the reaper's next round makes them
            log.exception("job %s: branching its variants failed; the reaper tries again", job.id)

    async def _spawn_pending(self) -> None:
        if self.after_success is not None:
            for job in await self.store.pending_spawns():
                await self._spawn(job)

    async def _requeue_stale(self) -> None:
        ids = await self.store.requeue_stale(orphaned=orphaned)
        if ids:
            log.info("re-queued %d jobs whose runner is gone", len(ids))
        for job_id in ids:
            await self.enqueue(await self.store.get(job_id))

    async def record(
        self,
        job_id: str,
        values: dict[str, Any],
        type_: str,
        data: dict[str, Any],
        timing: tuple[str, str, float] | None = None,
    ) -> None:
        """An event and the job row's new `values` (and a node's timing) in one transaction."""
        await self.store.progress(job_id, values, type_, data, timing, owner=self.owner)
        self.bus.publish(job_id)

    async def run_claimed(self, job: Job, observe: Listener | None = None) -> RunResult:
        """Run a job this runner's `owner` holds the lease of (a job the CLI runs in its own process);
        `observe(kind, data)` sees each event of the run as it happens."""
        try:  # no retry of a job the CLI runs: its user sees the error, and `jobs resume` continues it
            return await self._run(job, observe, retry=False)
        except Exception as e:
            log.exception("job %s crashed the runner", job.id)
            error = error_of(e)
            await self._finish(job, "failed", error=error)
            return RunResult(job_id=job.id, status="failed", error=error)

    async def _run(self, job: Job, observe: Listener | None = None, *, retry: bool = True) -> RunResult:
        wf = self.workflows[job.workflow]
        graph = self.graphs[job.workflow]
        control = RunControl()
        self._controls[job.id] = control
        heartbeat = asyncio.create_task(self._heartbeat(job.id, control))
        try:
            snapshot = await graph.aget_state(thread_config(job.id))
            ctx = self.contexts[job.workflow]
            if hasattr(ctx, "scope"):  # whose cached step results the run may reuse: its tenant's
                ctx = dataclasses.replace(ctx, scope=job.tenant)
            graph_input = (
                None
                if snapshot.values
                else wf.graph_input(wf.input_model.model_validate(job.input), self.tools)
            )
            last = written_by(snapshot, wf.nodes) if snapshot.values else None
            done = list(wf.nodes[: wf.nodes.index(last) + 1]) if last in wf.nodes else []
            typical = await self._typical_seconds(job.workflow, wf.nodes)
            progress = _Progress(wf.nodes, done, typical)
            nodes = list(job.nodes or [])
            # A process that died mid-job left its last node "running": the checkpoints say how it ended.
            for n in nodes:
                if n["status"] == "running":
                    n["status"] = "succeeded" if n["name"] in done else "interrupted"
            await self.record(
                job.id,
                {"progress": progress.snapshot("running"), "nodes": nodes},
                "job_running",
                {"attempt": job.attempts, "resumed": bool(snapshot.values)},
            )

            record = _JobRecord(self, job, progress, nodes, observe)
            config = thread_config(job.id)
            if job.parent_job_id:
                parent = {"job_id": job.parent_job_id, "checkpoint_id": job.parent_checkpoint_id}
                config["metadata"] = {"parent": parent}
            with job_trace(job.id, job.workflow, job.attempts, job.tenant) as trace:  # logs and spans
                result = await run_job(
                    graph,
                    ctx,
                    job.id,
                    graph_input,
                    config=config,
                    listener=trace.listen(record),
                    control=control,
                    order=wf.nodes,
                )
                trace.end(result.status, result.error, result.drained)
                await self._settle(job, result, progress, retry=retry)
            return result
        finally:
            heartbeat.cancel()
            self._controls.pop(job.id, None)

    async def _settle(self, job: Job, result: RunResult, progress: _Progress, *, retry: bool = True) -> None:
        if result.status == "succeeded":
            wf = self.workflows[job.workflow]
            out = {
                name: {
                    "id": o.ref.id,
                    "url": f"/v1/artifacts/{o.ref.id}",
                    "mime": o.ref.mime,
                    "backends": o.backends,
                }
                for name, o in wf.results(result.values).items()
            }
            if (report := wf.report(result.values)) is not None:
                await self.emit(job.id, "report", report)
            await self._finish(job, "succeeded", result=out, progress=progress.snapshot("done", done=True))
            if job.spawn_pending:
                await self._spawn(job)
        elif result.drained == "cancel":
            await self._finish(job, "cancelled", progress=progress.snapshot("cancelled"))
        elif result.drained:  # shutdown or lease lost: someone continues it from its checkpoint
            await self._put_back(job, result.drained)
        elif retry and result.error is not None and (wait := self._retry_in(job, result.error)) is not None:
            await self._retry(job, result.error, wait, progress)
        else:
            await self._finish(job, "failed", error=result.error, progress=progress.snapshot("failed"))

    def _retry_in(self, job: Job, error: AdgraphError) -> float | None:
        """Seconds until the next try of a job that failed with `error`, or None: it ends failed. Failures
        count since the job last ended (a resumed job gets its attempts again)."""
        if error.code not in TRANSIENT_CODES:
            return None
        failures = 1
        for entry in reversed(job.attempt_log or []):
            if entry.get("outcome") != "retrying":
                if entry.get("outcome") in ("failed", "cancelled", "succeeded"):
                    break
                continue
            failures += 1
        if failures >= self.max_attempts:
            return None
        return min(300.0, self.retry_backoff_s * 2 ** (failures - 1) * random.uniform(0.5, 1.5))

    async def _retry(
        self, job: Job, error: AdgraphError, wait_s: float, progress: _Progress | None = None
    ) -> None:
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait_s)
        log_ = self._log_attempt(job, "retrying", error, retry_at=at.isoformat())
        back = {"status": "queued", "lease_owner": None, "lease_expires_at": None, "not_before": at}
        message = f"retrying in {wait_s:.0f} s after {error.code}"
        if progress is not None:
            back["progress"] = progress.snapshot(message)
        detail = {"attempt": job.attempts, "error": public(error), "retry_in_s": round(wait_s, 2)}
        if await self.store.settle(job.id, self.owner, {"attempt_log": log_, **back}, "job_retrying", detail):
            self.bus.publish(job.id)
            await self.enqueue(await self.store.get(job.id))

    async def _put_back(self, job: Job, reason: str) -> None:
        """Back to the queue (a shutdown, a lease lost): another runner continues it from its checkpoint."""
        back = {"status": "queued", "lease_owner": None, "lease_expires_at": None}
        log_ = self._log_attempt(job, "requeued", reason=reason)
        if await self.store.settle(
            job.id, self.owner, {"attempt_log": log_, **back}, "job_requeued", {"reason": reason}
        ):
            self.bus.publish(job.id)
            if reason != "lease lost":
                await self.enqueue(await self.store.get(job.id))

    def _log_attempt(
        self, job: Job, outcome: str, error: AdgraphError | None = None, **extra: Any
    ) -> list[Any]:
        """The job's attempt history with this attempt's end added (and the one before, if its runner died
        without a word)."""
        entries = list(job.attempt_log or [])
        logged = {e.get("attempt") for e in entries}
        if job.attempts > 1 and job.attempts - 1 not in logged:
            entries.append({"attempt": job.attempts - 1, "outcome": "lost"})  # killed, or its lease ran out
        entry: dict[str, Any] = {
            "attempt": job.attempts,
            "worker": self.owner,
            "started_at": job.updated_at.isoformat() if job.updated_at else None,
            "ended_at": dt.datetime.now(dt.UTC).isoformat(),
            "outcome": outcome,
        }
        if error is not None:
            entry["error"] = error.code
        entry.update(extra)
        return [*entries, entry]

    async def _finish(
        self,
        job: Job,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: AdgraphError | None = None,
        progress: dict[str, Any] | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "lease_owner": None,
            "lease_expires_at": None,
            "cancel_requested": False,
            "attempt_log": self._log_attempt(job, status, error),
        }
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = public(error)  # read by every client: no server path in it
        if progress is not None:
            values["progress"] = progress
        event = {"status": status, **({"error": values["error"]} if error else {})}
        if not await self.store.settle(job.id, self.owner, values, "job_finished", event):
            log.warning("job %s: lease lost before it finished here; its new runner finishes it", job.id)
            return
        self.bus.publish(job.id)

    async def _heartbeat(self, job_id: str, control: RunControl) -> None:
        """Renew the lease every third of it; look for a cancel request (set through the API, maybe in
        another process) every half second, so it lands at the next node boundary."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            try:
                if time.monotonic() - renewed >= self.lease_s / 3:
                    job = await self.store.renew(job_id, self.owner, self.lease_s)
                    renewed = time.monotonic()
                    if job is None:
                        control.request_drain("lease lost")
                        return
                    cancel = job.cancel_requested
                else:
                    cancel = await self.store.cancel_requested(job_id)
            except Exception:  # the database blinked; the lease has slack for the next try
                continue
            if cancel:
                control.request_drain("cancel")


class _JobRecord:
    """A run's events written to its job: the node list, progress and ETA, the event log (each node
    boundary one transaction), and the active checkpoint; `observe` sees every event first."""

    def __init__(
        self, runner: JobRunner, job: Job, progress: _Progress, nodes: list[dict], observe: Listener | None
    ) -> None:
        self.runner, self.job, self.progress, self.nodes, self.observe = runner, job, progress, nodes, observe
        self.recorded: set[str] = set()
        """Artifacts already granted and recorded for this job in this run (each is written once)."""

    async def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if self.observe is not None and inspect.isawaitable(seen := self.observe(kind, data)):
            await seen
        if kind == "node_started":
            await self._started(data["node"])
        elif kind == "node_finished":
            await self._finished(data)
        elif kind == "values":  # the job's tenant may see every file its state refers to, kept for the job
            refs = [r for r in artifact_refs(data) if r.id not in self.recorded]
            if refs:
                await self.runner.store.grant(self.job.tenant, refs, job_id=self.job.id)
                self.recorded.update(r.id for r in refs)
        elif kind == "checkpoint":
            await self.runner.record(self.job.id, {"active_checkpoint_id": data["id"]}, "checkpoint", data)
        elif kind == "progress":  # inside a node: a diffusion step, an agent's call
            message = data.get("message") or f"running {data.get('node')}"
            snap = self.progress.snapshot(message, fraction=data.get("fraction"))
            await self.runner.record(self.job.id, {"progress": snap}, "progress", {**data, "progress": snap})
        else:  # what a node wants on the record: an agent's fallback, say
            await self.runner.emit(self.job.id, kind, data)

    async def _started(self, node: str) -> None:
        self.progress.start(node)
        started_at = dt.datetime.now(dt.UTC).isoformat()
        run = {"name": node, "status": "running", "attempt": self.job.attempts, "started_at": started_at}
        self.nodes.append({**run, "seconds": None})
        snap = self.progress.snapshot(f"running {node}")
        values = {"progress": snap, "nodes": self.nodes}
        await self.runner.record(self.job.id, values, "node_started", {"node": node, "progress": snap})

    async def _finished(self, data: dict[str, Any]) -> None:
        finished_at = time.time()  # wall clock, so a client can measure how late the event came
        for n in reversed(self.nodes):
            if n["name"] == data["name"] and n["status"] == "running":
                n.update(status=data["status"], seconds=data["seconds"])
                if data.get("cached"):
                    n["cached"] = True
                break
        timing = None
        if data["status"] == "succeeded":
            self.progress.finish(data["name"])
            if not data.get("cached"):  # a cache hit's few ms would make the ETA of real work too short
                timing = (self.job.workflow, data["name"], data["seconds"])
        snap = self.progress.snapshot(f"{data['name']} {data['status']}")
        event = {**data, "finished_at": finished_at, "progress": snap}
        values = {"progress": snap, "nodes": self.nodes}
        await self.runner.record(self.job.id, values, "node_finished", event, timing)


class _Progress:
    """Percent done and ETA from the nodes' typical durations (1 s for a node never timed)."""

    def __init__(self, order: tuple[str, ...], done: list[str], typical: dict[str, float]) -> None:
        self.order, self.done, self.typical = order, set(done), typical
        self.current: str | None = None
        self.started = time.perf_counter()

    def _cost(self, node: str) -> float:
        return self.typical.get(node, 1.0)

    def start(self, node: str) -> None:
        self.current, self.started = node, time.perf_counter()

    def finish(self, node: str) -> None:
        self.done.add(node)
        self.current = None

    def snapshot(
        self, message: str | None = None, *, done: bool = False, fraction: float | None = None
    ) -> dict[str, Any]:
        """`fraction`: how far the current node says it is (0-1); else its elapsed share of its usual time."""
        total = sum(self._cost(n) for n in self.order)
        finished = sum(self._cost(n) for n in self.order if n in self.done)
        remaining = total - finished
        if self.current:
            cost = self._cost(self.current)
            if fraction is not None:
                finished += cost * min(max(float(fraction), 0.0), 0.99)
            else:
                finished += min(time.perf_counter() - self.started, cost * 0.95)
            remaining = max(0.0, total - finished)
        percent = 100 if done else min(99, round(100 * finished / total)) if total else 0
        return {
            "percent": percent,
            "node": self.current,
            "message": message or "",
            "eta_seconds": 0.0 if done else round(remaining, 2),
        }
