"""Variants: one job asks for several results that share their first steps (an ad in several copies and
sizes), written once over `Jobs` for every door.

The job is variant 0 and runs as any job. Every other variant is an ordinary branch of an earlier
variant's job from the checkpoint after the node where they part (`Workflow.variants`: for an ad, a size
branches after `segment`, a copy after `analyze`), made by whichever runner finishes that source job
(`JobRunner.after_success`), or by any runner's reaper if that one died first (`spawn_pending`). So the
product is cut out once, each size gets one backdrop and composition, each copy x size one text layer, and
each variant can be branched, resumed or deleted on its own later. What the set adds up to is derived from
its jobs each time it is read, like a batch's.

Why branches and not LangGraph `Send` inside one run: a variant is then a job like any other, with its
own checkpoints, events, lineage and result, seen through every door (REST, CLI, MCP, /lg threads)
without any of them learning about fan-out; and a failed variant is resumed alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from service.accounts import Caller
from service.batches import batch_status
from service.db import Job
from service.jobs import Jobs
from service.outputs import write_zip
from service.workflows import WORKFLOWS, VariantSpec

log = logging.getLogger("adgraph.variants")

IMAGE = {"ad": "ad"}
"""The result of each workflow's variant that goes into the zip."""


@dataclass(frozen=True)
class Variant:
    spec: VariantSpec
    job: Job | None
    """None until its source job has succeeded and branched it."""
    status: str
    """Its job's status; one not made yet is "queued" while its source may still succeed, else its
    source's ("failed", "cancelled"): it waits on that job's resume."""


@dataclass(frozen=True)
class VariantSet:
    job: Job
    """Variant 0: the job that asked for them."""
    variants: list[Variant]
    status: str
    counts: dict[str, int]
    percent: int


class Variants:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.store = jobs.store

    async def spawn(self, job: Job) -> list[Job]:
        """Branch the variants whose source is `job`, which has succeeded (each once: one another runner
        made meanwhile is skipped), then mark it done. A failure leaves it pending for the reaper."""
        if not job.spawn_pending or job.variant_of is None or job.variant is None:
            return []
        root = job if job.id == job.variant_of else await self.store.get(job.variant_of)
        wf = WORKFLOWS[root.workflow]
        specs = wf.variants(wf.input_model.model_validate(root.input))
        made = {j.variant for j in await self.store.variants_of(root.id)}
        # the job's own tenant and key: the variants were admitted against that key with the job
        caller = Caller(job.tenant, frozenset({"submit"}), key_id=job.key_id)
        children: list[Job] = []
        for spec in specs:
            if spec.source != job.variant or spec.index in made:
                continue
            spawns = any(s.source == spec.index for s in specs)
            with contextlib.suppress(IntegrityError):  # another runner's reaper made it first
                children.append(
                    await self.jobs.branch(
                        caller,
                        job.id,
                        from_node=spec.from_node,
                        changes=spec.changes,
                        variant=(root.id, spec.index, spawns),
                    )
                )
        await self.store.spawned(job.id)
        if children:
            log.info("job %s: branched variants %s", job.id, [c.variant for c in children])
        return children

    async def get(self, caller: Caller, job_id: str) -> VariantSet:
        """The variants of the set `job_id` is one of (a job that asked for none: itself alone)."""
        job = await self.jobs.get(caller, job_id)
        root = job if job.variant_of in (None, job.id) else await self.jobs.get(caller, job.variant_of)
        return await self._view(root)

    async def _view(self, root: Job) -> VariantSet:
        wf = WORKFLOWS[root.workflow]
        specs = wf.variants(wf.input_model.model_validate(root.input)) or [VariantSpec(0, None, None, {}, {})]
        by_index = {j.variant: j for j in await self.store.variants_of(root.id)} or {0: root}
        variants: list[Variant] = []
        for spec in specs:
            job = by_index.get(spec.index)
            if job is not None:
                status = job.status
            else:
                source = variants[spec.source].status if spec.source is not None else "queued"
                status = source if source in ("failed", "cancelled") else "queued"
            variants.append(Variant(spec, job, status))
        counts = dict.fromkeys(("queued", "running", "succeeded", "failed", "cancelled"), 0)
        for v in variants:
            counts[v.status] += 1
        percents = [
            100
            if v.status == "succeeded"
            else int(((v.job.progress or {}).get("percent") or 0) if v.job else 0)
            for v in variants
        ]
        percent = round(sum(percents) / len(percents))
        return VariantSet(root, variants, batch_status(counts), counts, percent)

    async def run_here(self, caller: Caller, job_id: str, observe: Any = None) -> VariantSet:
        """Run, in this process, the variants of a set whose first job this process has just run (the
        CLI), ADGRAPH_MAX_CONCURRENT_JOBS at a time, wave after wave as each branches the next; one a
        worker over the same database took meanwhile is followed to its end. `observe(job, result)`."""
        owner = self.jobs._lease(True)[0]  # type: ignore[index]
        gate = asyncio.Semaphore(max(1, self.jobs.settings.max_concurrent_jobs))

        async def one(job: Job) -> None:
            async with gate:
                held = await self.store.claim(owner, self.jobs.settings.lease_s, job_id=job.id)
                if held is not None:
                    result = await self.jobs.run(held)
                else:
                    async for _ in self.jobs.events(caller, job.id):
                        pass
                    result = None
                if observe is not None:
                    observe(await self.store.get(job.id), result)

        seen: set[str] = set()
        while True:
            view = await self.get(caller, job_id)
            todo = [v.job for v in view.variants if v.job is not None and v.job.id not in seen]
            todo = [j for j in todo if j.status in ("queued", "running")]
            if not todo:
                return view
            seen.update(j.id for j in todo)
            await asyncio.gather(*(one(j) for j in todo))

    async def write_zip(self, caller: Caller, job_id: str, dest: Path) -> VariantSet:
        """A ZIP of each succeeded variant's image, `variant-01-1080x1080.png` (numbered from 1), and a
        `manifest.json` with every variant's job, status, what sets it apart and its file."""
        view = await self.get(caller, job_id)
        store = self.jobs.components.artifacts
        key = IMAGE.get(view.job.workflow)
        entries: list[tuple[Path, str]] = []
        manifest = []
        for v in view.variants:
            ref = (v.job.result or {}).get(key) if key and v.job and v.status == "succeeded" else None
            size = v.spec.label.get("size")
            name = f"variant-{v.spec.index + 1:02d}{f'-{size}' if size else ''}.png" if ref else None
            if ref:
                entries.append((await store.local_path(ref["id"], ref.get("mime")), name))  # type: ignore[arg-type]
            manifest.append(
                {
                    "variant": v.spec.index + 1,
                    **v.spec.label,
                    "job_id": v.job.id if v.job else None,
                    "status": v.status,
                    "error": ((v.job.error or {}).get("code") if v.job else None),
                    "file": name,
                }
            )
        doc = {"job_id": view.job.id, "status": view.status, "counts": view.counts, "variants": manifest}
        extra = {"manifest.json": json.dumps(doc, indent=2, ensure_ascii=False)}
        await asyncio.to_thread(write_zip, dest, entries, extra)
        return view
