"""Batches: many jobs of one workflow made by one request (a shop's catalog: one ad per row), written once
over `Jobs` for every door (REST `service/api/batches.py`, `adgraph catalog`).

A batch's jobs are ordinary jobs (listed by /v1/jobs, counted by the key's quota, with their own events)
that carry `batch_id` and `batch_row`; the batch's status, counts, progress and ETA are derived from them
each time it is read, so nothing about a batch can drift from its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from kernel.errors import AdgraphError
from service.accounts import Caller
from service.db import Batch, Job, utcnow
from service.jobs import Jobs, check_priority, parse
from service.outputs import write_zip
from service.running import new_job_id
from service.workflows import get_workflow

MAX_ROWS = 200
"""Rows one batch may have."""
WORKFLOWS = ("ad",)
"""The workflows a batch may be made of (the zip holds each row's `ad` image)."""
IMAGE = {"ad": "ad"}
"""The result of each workflow's job that goes into the batch's zip."""


@dataclass(frozen=True)
class BatchView:
    """A batch as read: its row, its jobs in row order and what they add up to."""

    batch: Batch
    jobs: list[Job]
    status: str
    counts: dict[str, int]
    percent: int
    eta_seconds: float | None

    @property
    def updated_at(self) -> Any:
        return max([self.batch.updated_at, *(j.updated_at for j in self.jobs)])


def check_batch_id(batch_id: str) -> str:
    try:
        canonical = str(uuid.UUID(batch_id))
    except (ValueError, AttributeError, TypeError):
        canonical = None
    if canonical is None or canonical != batch_id:
        raise AdgraphError("INVALID_INPUT", f"malformed batch id {batch_id!r}: expected a UUID")
    return canonical


def batch_status(counts: dict[str, int]) -> str:
    """queued: none started; running: some still queued or running, after others started or ended;
    succeeded/failed/cancelled: every job ended so; partial: every job ended, some succeeded, some not;
    failed also when none succeeded and some failed (the rest cancelled)."""
    total = sum(counts.values())
    if counts.get("queued", 0) == total:
        return "queued"
    if counts.get("queued", 0) or counts.get("running", 0):
        return "running"
    if counts.get("succeeded", 0) == total:
        return "succeeded"
    if counts.get("succeeded", 0):
        return "partial"
    return "failed" if counts.get("failed", 0) else "cancelled"


class Batches:
    """The batch operations over one `Jobs` service."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.store = jobs.store

    # -- making one ----------------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        workflow: str,
        rows: Sequence[Any],
        *,
        priority: int = 0,
        run_here: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> BatchView:
        """A batch with one queued job per row, in row order. Every row is checked first with the
        workflow's own input model and `prepare` (the caller must see each photo); if any is bad the whole
        batch is INVALID_INPUT naming each bad row (from 1), and nothing is made. The jobs count against the
        key's quota: a key that cannot take them all (`max_running`) is QUOTA_EXCEEDED, a queue that cannot
        is QUEUE_FULL. With `run_here` the jobs are not handed to the queue: this process runs them
        (`run_here` below; the CLI)."""
        caller.require("submit")
        if workflow not in WORKFLOWS:
            raise AdgraphError(
                "INVALID_INPUT",
                f"a batch is made of {', '.join(WORKFLOWS)} jobs, not {workflow!r}",
                field="workflow",
            )
        priority = check_priority(priority)
        if not isinstance(rows, list | tuple) or not 1 <= len(rows) <= MAX_ROWS:
            n = len(rows) if isinstance(rows, list | tuple) else "no"
            raise AdgraphError(
                "INVALID_INPUT", f"a batch has 1 to {MAX_ROWS} rows, not {n}", field="rows", max_rows=MAX_ROWS
            )
        wf = get_workflow(workflow)
        prepared: list[Any] = []
        problems: list[dict[str, Any]] = []
        for number, raw in enumerate(rows, start=1):
            try:
                prepared.append(await self._check_row(caller, wf, raw))
            except AdgraphError as e:
                if e.code in ("FORBIDDEN",):
                    raise
                problems += _row_problems(number, e)
        if problems:
            shown = "; ".join(f"row {p['row']}: {p['field']}: {p['message']}"[:300] for p in problems[:20])
            more = len(problems) - 20
            raise AdgraphError(
                "INVALID_INPUT",
                shown + (f"; and {more} more problems" if more > 0 else ""),
                rows=problems,
                fields=[f"rows.{p['row']}.{p['field']}" for p in problems][:20],
            )
        async with self._admitted(caller, len(prepared), run_here):
            batch = Batch(
                id=str(uuid.uuid4()),
                tenant=caller.tenant,
                key_id=caller.key_id,
                workflow=wf.name,
                rows=len(prepared),
                meta=meta or {},
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            async with self.store.sessions.begin() as s:
                s.add(batch)
            made: list[Job] = []
            try:
                for number, (opts, inputs) in enumerate(prepared, start=1):  # in order: created_at rises
                    made.append(
                        await self.store.create(
                            new_job_id(),
                            wf.name,
                            opts.model_dump(mode="json"),
                            tenant=caller.tenant,
                            key_id=caller.key_id,
                            artifact_ids=inputs,
                            priority=priority,
                            batch_id=batch.id,
                            batch_row=number,
                        )
                    )
            except BaseException:
                await asyncio.shield(self._forget(batch.id, [j.id for j in made]))
                raise
        if not run_here:
            for job in made:
                await self.jobs.runner.enqueue(job)
        return await self.get(caller, batch.id)

    async def _check_row(self, caller: Caller, wf: Any, raw: Any) -> tuple[Any, list[str]]:
        if not isinstance(raw, dict):
            raise AdgraphError("INVALID_INPUT", "a row is an object of the job's input fields", field="row")
        opts = parse(wf.input_model, raw)
        if wf.variants(opts):
            raise AdgraphError(
                "INVALID_INPUT",
                "a row makes one ad: give it one copy and one size (variants are for POST /v1/jobs)",
                field="copies" if getattr(opts, "copies", None) and len(opts.copies) > 1 else "sizes",
            )
        inputs = [(await self.jobs.artifact(caller, a)).id for a in wf.artifacts_of(opts)]
        opts = await asyncio.to_thread(wf.prepare, opts, self.jobs.components)
        return opts, inputs

    def _admitted(self, caller: Caller, n: int, run_here: bool) -> Any:
        """Room for `n` more jobs of `caller`: all of them, or none (QUOTA_EXCEEDED, QUEUE_FULL)."""
        return self.jobs._admitted(caller, run_here, n, f"a batch of {n}")

    async def _forget(self, batch_id: str, job_ids: list[str]) -> None:
        from sqlalchemy import delete

        async with self.store.sessions.begin() as s:
            if job_ids:
                await s.execute(delete(Job).where(Job.id.in_(job_ids)))
            await s.execute(delete(Batch).where(Batch.id == batch_id))

    # -- reading -------------------------------------------------------------------------------------

    async def _batch(self, caller: Caller, batch_id: str, scope: str) -> Batch:
        caller.require(scope)
        batch_id = check_batch_id(batch_id)
        async with self.store.sessions() as s:
            batch = await s.get(Batch, batch_id)
        if batch is None or not caller.sees(batch.tenant):  # another tenant's: as if it did not exist
            raise AdgraphError("BATCH_NOT_FOUND", f"no batch {batch_id}")
        return batch

    async def _jobs_of(self, batch_id: str) -> list[Job]:
        q = select(Job).where(Job.batch_id == batch_id).order_by(Job.batch_row)
        async with self.store.sessions() as s:
            return list((await s.scalars(q)).all())

    async def get(self, caller: Caller, batch_id: str) -> BatchView:
        batch = await self._batch(caller, batch_id, "read")
        return await self._view(batch)

    async def _view(self, batch: Batch) -> BatchView:
        jobs = await self._jobs_of(batch.id)
        counts = dict.fromkeys(("queued", "running", "succeeded", "failed", "cancelled"), 0)
        for j in jobs:
            counts[j.status] += 1
        percents = [
            100 if j.status == "succeeded" else int((j.progress or {}).get("percent") or 0) for j in jobs
        ]
        percent = round(sum(percents) / len(percents)) if percents else 0
        return BatchView(batch, jobs, batch_status(counts), counts, percent, await self._eta(batch, jobs))

    async def _eta(self, batch: Batch, jobs: list[Job]) -> float | None:
        """Seconds until every job has ended: the running jobs' own ETAs plus, for each queued one, a whole
        job's typical time (the median of each node's last runs), divided by the jobs run at once
        (ADGRAPH_MAX_CONCURRENT_JOBS). None while there is nothing to go by; 0 once all have ended."""
        left = [j for j in jobs if j.status in ("queued", "running")]
        if not left:
            return 0.0
        wf = get_workflow(batch.workflow)
        typical = await self.store.typical_seconds(wf.name, wf.nodes)
        whole = sum(typical.values()) if len(typical) == len(wf.nodes) else None
        total = 0.0
        for j in left:
            eta = (j.progress or {}).get("eta_seconds") if j.status == "running" else None
            eta = eta if eta is not None else whole
            if eta is None:
                return None
            total += float(eta)
        return round(total / max(1, self.jobs.settings.max_concurrent_jobs), 1)

    async def list_jobs(self, caller: Caller, batch_id: str) -> BatchView:
        return await self.get(caller, batch_id)

    # -- acting on its jobs ---------------------------------------------------------------------------

    async def cancel(self, caller: Caller, batch_id: str) -> BatchView:
        """Cancel every queued job (at once) and every running one (at its next node boundary); the ended
        ones are left as they are."""
        batch = await self._batch(caller, batch_id, "submit")
        jobs = await self._jobs_of(batch.id)
        # the queued ones first, so none of them starts while the running ones are being stopped
        for job in sorted(jobs, key=lambda j: j.status != "queued"):
            if job.status in ("queued", "running"):
                with contextlib.suppress(AdgraphError):  # it ended meanwhile
                    await self.jobs.cancel(caller, job.id)
        return await self._view(batch)

    async def resume(self, caller: Caller, batch_id: str) -> BatchView:
        """Resume every failed or cancelled job of the batch from its last checkpoint (each alone, as
        `Jobs.resume`); succeeded ones are untouched. None to resume: JOB_NOT_RESUMABLE. The key must have
        room for all of them (QUOTA_EXCEEDED, QUEUE_FULL), or none is resumed."""
        batch = await self._batch(caller, batch_id, "submit")
        todo = [j for j in await self._jobs_of(batch.id) if j.status in ("failed", "cancelled")]
        if not todo:
            raise AdgraphError(
                "JOB_NOT_RESUMABLE", f"batch {batch.id} has no failed or cancelled job to resume"
            )
        async with self._admitted(caller, len(todo), False):
            pass  # checked for all at once; each resume below takes its own slot
        for job in todo:
            with contextlib.suppress(AdgraphError):  # resumed meanwhile by another request
                await self.jobs.resume(caller, job.id)
        return await self._view(batch)

    async def run_here(
        self,
        caller: Caller,
        batch_id: str,
        observe: Callable[[Job, Any], Awaitable[None] | None] | None = None,
    ) -> BatchView:
        """Run a batch made with `run_here` in this process, ADGRAPH_MAX_CONCURRENT_JOBS at a time, in row
        order; `observe(job, result)` after each. A job another process took meanwhile is waited for."""
        batch = await self._batch(caller, batch_id, "submit")
        owner = self.jobs._lease(True)[0]  # type: ignore[index]
        gate = asyncio.Semaphore(max(1, self.jobs.settings.max_concurrent_jobs))

        async def one(job: Job) -> None:
            async with gate:
                held = await self.store.claim(owner, self.jobs.settings.lease_s, job_id=job.id)
                if held is not None:
                    result = await self.jobs.run(held)
                else:  # taken by a worker over the same database, or cancelled: follow it to its end
                    async for _ in self.jobs.events(caller, job.id):
                        pass
                    result = None
                if observe is not None:
                    done = observe(await self.store.get(job.id), result)
                    if asyncio.iscoroutine(done):
                        await done

        todo = [j for j in await self._jobs_of(batch.id) if j.status == "queued"]
        await asyncio.gather(*(one(j) for j in todo))
        return await self._view(batch)

    # -- what it made ---------------------------------------------------------------------------------

    async def write_zip(self, caller: Caller, batch_id: str, dest: Path) -> BatchView:
        """Write a ZIP to `dest`: each succeeded row's image as `row-003-<job id's first 8>.png`, and
        `manifest.json` and `index.csv` with every row's job, status, error and file. The images are
        copied from the artifact store one at a time (never all in memory)."""
        view = await self.get(caller, batch_id)
        store = self.jobs.components.artifacts
        key = IMAGE[view.batch.workflow]
        entries: list[tuple[Path, str]] = []
        manifest = []
        for job in view.jobs:
            ref = (job.result or {}).get(key) if job.status == "succeeded" else None
            name = f"row-{job.batch_row:03d}-{job.id[:8]}.png" if ref else None
            if ref:
                entries.append((await store.local_path(ref["id"], ref.get("mime")), name))  # type: ignore[arg-type]
            manifest.append(
                {
                    "row": job.batch_row,
                    "job_id": job.id,
                    "status": job.status,
                    "error": (job.error or {}).get("code"),
                    "message": (job.error or {}).get("message"),
                    "file": name,
                    "artifact_id": ref["id"] if ref else None,
                }
            )
        doc = {
            "batch_id": view.batch.id,
            "workflow": view.batch.workflow,
            "status": view.status,
            "counts": view.counts,
            "rows": manifest,
        }

        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(["row", "job_id", "status", "error", "file"])
        for m in manifest:
            out.writerow([m["row"], m["job_id"], m["status"], m["error"] or "", m["file"] or ""])
        texts = {"manifest.json": json.dumps(doc, indent=2, ensure_ascii=False), "index.csv": buf.getvalue()}
        await asyncio.to_thread(write_zip, dest, entries, texts)
        return view

    async def count(self, tenant: str | None = None) -> int:
        q = select(func.count()).select_from(Batch)
        if tenant is not None:
            q = q.where(Batch.tenant == tenant)
        async with self.store.sessions() as s:
            return int((await s.execute(q)).scalar_one())


def _row_problems(number: int, e: AdgraphError) -> list[dict[str, Any]]:
    """One entry per bad field of row `number`: {row, field, code, message}."""
    fields = e.details.get("fields") or [e.details.get("field") or "input"]
    if e.code == "INVALID_INPUT" and len(fields) > 1:
        parts = e.message.split("; ")
        if len(parts) >= len(fields):
            return [
                {"row": number, "field": f, "code": e.code, "message": p.removeprefix(f"{f}: ")}
                for f, p in zip(fields, parts, strict=False)
            ]
    field = fields[0]
    if e.code in ("ARTIFACT_NOT_FOUND", "INVALID_IMAGE") and field == "input":
        field = "product_image"
    return [{"row": number, "field": field, "code": e.code, "message": e.message.removeprefix(f"{field}: ")}]
