"""The in-process job runner: takes queued jobs from the database, runs them, keeps their leases.

Several runners (processes) may share a database: `claim` hands each job to one of them, a runner that
dies stops renewing its leases, and `requeue_stale` puts its jobs back in the queue, where they continue
from their last checkpoint. A job whose runner was a process of this machine that no longer exists (a
server or CLI killed mid-job) is re-queued at once, without waiting for its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import inspect
import logging
import time
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import RunControl

from checkpoints.history import thread_config, written_by
from kernel.errors import AdgraphError, public
from kernel.models import artifact_refs
from service.db import Job
from service.events import EventBus
from service.observability import job_trace
from service.owners import new_owner, orphaned
from service.running import Listener, RunResult, run_job
from service.store import JobStore
from service.workflows import Tools, Workflow

log = logging.getLogger("adgraph.runner")


class RemoteRunner:
    """The API process's side when jobs run in worker processes (`adgraph worker`): the database is the
    only channel — workers poll the queue and the cancel flag, the app's `EventTail` reads the events
    table for its streams. `JobRunner` adds running them here."""

    def __init__(self, store: JobStore, bus: EventBus) -> None:
        self.store, self.bus = store, bus

    def wake(self) -> None:
        """Workers look for queued jobs on their own (every `idle_poll_s`)."""

    def cancel_running(self, job_id: str) -> bool:
        """The worker running it sees `cancel_requested` within half a second."""
        return False

    async def emit(self, job_id: str, type_: str, data: dict[str, Any]) -> None:
        await self.store.add_event(job_id, type_, data)
        self.bus.publish(job_id)


class JobRunner(RemoteRunner):
    """Runs jobs in this process: queued ones it claims (a worker), or ones it holds already (the CLI)."""

    def __init__(
        self,
        store: JobStore,
        workflows: dict[str, Workflow],
        graphs: dict[str, CompiledStateGraph],
        contexts: dict[str, Any],
        bus: EventBus,
        tools: Tools,
        *,
        concurrency: int = 2,
        lease_s: float = 15.0,
        idle_poll_s: float = 1.0,
    ) -> None:
        self.store, self.workflows, self.graphs, self.bus = store, workflows, graphs, bus
        self.contexts, self.tools = contexts, tools
        """Run context per workflow name; what turns a job's stored input into graph input."""
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.idle_poll_s = idle_poll_s
        """How often an idle worker looks for work when no in-process API wakes it."""
        self.owner = new_owner()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._controls: dict[str, RunControl] = {}
        self._stopping = False

    async def start(self) -> None:
        requeued = await self.store.requeue_stale(orphaned=orphaned)
        if requeued:
            log.info("re-queued %d jobs orphaned by a previous process", len(requeued))
        self._tasks = [
            asyncio.create_task(self._worker(i), name=f"job-worker-{i}") for i in range(self.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._reaper(), name="job-reaper"))

    async def stop(self) -> None:
        """Stop at the next node boundary; unfinished jobs go back to the queue for the next start."""
        self._stopping = True
        for control in self._controls.values():
            control.request_drain("shutdown")
        self._wake.set()
        for task in self._tasks:
            if task.get_name() == "job-reaper":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=30)

    def wake(self) -> None:
        self._wake.set()

    def cancel_running(self, job_id: str) -> bool:
        control = self._controls.get(job_id)
        if control is None:
            return False
        control.request_drain("cancel")
        return True

    async def _worker(self, index: int) -> None:
        while not self._stopping:
            try:
                job = await self.store.claim(self.owner, self.lease_s)
            except Exception:  # the database blinked; try again shortly
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.idle_poll_s)
                continue
            try:
                await self._run(job)
            except Exception as e:  # never lose the worker; the job ends failed with a code
                log.exception("job %s crashed the runner", job.id)
                await self._finish(
                    job.id, "failed", error=AdgraphError("INTERNAL", f"{type(e).__name__}: {e}")
                )

    async def _reaper(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.lease_s / 2)
            with contextlib.suppress(Exception):
                if await self.store.requeue_stale(orphaned=orphaned):
                    self.wake()

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
        try:
            return await self._run(job, observe)
        except Exception as e:
            log.exception("job %s crashed the runner", job.id)
            error = AdgraphError("INTERNAL", f"{type(e).__name__}: {e}")
            await self._finish(job.id, "failed", error=error)
            return RunResult(job_id=job.id, status="failed", error=error)

    async def _run(self, job: Job, observe: Listener | None = None) -> RunResult:
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
            typical = await self.store.typical_seconds(job.workflow, wf.nodes)
            progress = _Progress(wf.nodes, done, typical)
            nodes = list(job.nodes or [])
            # A process that died mid-job left its last node "running": the checkpoints say how it ended.
            for n in nodes:
                if n["status"] == "running":
                    n["status"] = "succeeded" if n["name"] in done else "interrupted"
            await self.store.update(
                job.id, owner=self.owner, progress=progress.snapshot("running"), nodes=nodes
            )
            await self.emit(
                job.id, "job_running", {"attempt": job.attempts, "resumed": bool(snapshot.values)}
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
                await self._settle(job, result, progress)
            return result
        finally:
            heartbeat.cancel()
            self._controls.pop(job.id, None)

    async def _settle(self, job: Job, result: RunResult, progress: _Progress) -> None:
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
            await self._finish(job.id, "succeeded", result=out, progress=progress.snapshot("done", done=True))
        elif result.drained == "cancel":
            await self._finish(job.id, "cancelled", progress=progress.snapshot("cancelled"))
        elif result.drained:  # shutdown or lease lost: someone continues it from its checkpoint
            back = {"status": "queued", "lease_owner": None, "lease_expires_at": None}
            if await self.store.update(job.id, owner=self.owner, **back):
                await self.emit(job.id, "job_requeued", {"reason": result.drained})
        else:
            await self._finish(job.id, "failed", error=result.error, progress=progress.snapshot("failed"))

    async def _finish(
        self,
        job_id: str,
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
        }
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = public(error)  # read by every client: no server path in it
        if progress is not None:
            values["progress"] = progress
        if not await self.store.update(job_id, owner=self.owner, **values):
            log.warning("job %s: lease lost before it finished here; its new runner finishes it", job_id)
            return
        await self.emit(
            job_id, "job_finished", {"status": status, **({"error": values["error"]} if error else {})}
        )

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
