"""Workflows, fonts, the system, health and metrics."""

from __future__ import annotations

import os

import psutil
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from kernel.errors import AdgraphError
from service.api.deps import CallerDep, ComponentsDep, JobsDep
from service.db import JOB_STATUSES
from service.schemas import ErrorResponse, FontOut, WorkflowDetail, WorkflowSummary
from service.workflows import WORKFLOWS

router = APIRouter(tags=["meta"])


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("adgraph_jobs", "Jobs by status", ["status"], registry=self.registry)
        self.queue_depth = Gauge("adgraph_queue_depth", "Jobs waiting to run", registry=self.registry)
        self.node_seconds = Histogram(
            "adgraph_node_seconds",
            "Node durations",
            ["workflow", "node"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.timings_seen = 0
        self.runtimes: list[tuple[str, dict]] = []
        """(process, runtime.stats()) of this process and of the workers, refreshed on each scrape."""
        self.registry.register(_RuntimesCollector(lambda: self.runtimes))


class _RuntimesCollector(Collector):
    """The model runtime metrics of `gpu_runtime.metrics` (adgraph_gpu_*), for every process that has a
    runtime (the API's, each worker's), each sample labelled with its `process`."""

    def __init__(self, sources) -> None:
        self._sources = sources

    def collect(self):
        from gpu_runtime.metrics import RuntimeCollector

        merged: dict[str, Metric] = {}
        for process, stats in self._sources():
            for family in RuntimeCollector(lambda s=stats: s).collect():
                out = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    out.add_sample(sample.name, {"process": process, **sample.labels}, sample.value)
        yield from merged.values()


@router.get("/v1/workflows", response_model=list[WorkflowSummary], tags=["workflows"])
async def workflows(caller: CallerDep) -> list[WorkflowSummary]:
    caller.require("read")
    return [WorkflowSummary(name=w.name, nodes=list(w.nodes)) for w in WORKFLOWS.values()]


@router.get(
    "/v1/workflows/{name}",
    response_model=WorkflowDetail,
    tags=["workflows"],
    responses={404: {"model": ErrorResponse}},
)
async def workflow(name: str, jobs: JobsDep, caller: CallerDep) -> WorkflowDetail:
    caller.require("read")
    if name not in WORKFLOWS:
        raise AdgraphError("NOT_FOUND", f"no workflow {name!r}; the workflows are {', '.join(WORKFLOWS)}")
    w = WORKFLOWS[name]
    drawable = jobs.graphs[name].get_graph()
    edges = [(e.source, e.target) for e in drawable.edges]
    return WorkflowDetail(
        name=w.name, nodes=list(w.nodes), input_schema=w.input_model.model_json_schema(), edges=edges
    )


@router.get("/v1/fonts", response_model=list[FontOut], tags=["fonts"])
async def fonts(parts: ComponentsDep, caller: CallerDep) -> list[FontOut]:
    caller.require("read")
    return [
        FontOut(family=f.family, style=f.style, weight=f.weight, hangul=f.hangul) for f in parts.fonts.faces()
    ]


@router.get("/v1/system", tags=["system"])
async def system(jobs: JobsDep, caller: CallerDep) -> dict:
    """The machine, the queue, jobs by status, the model runtime and storage per tenant (admin: it names
    processes and tenants)."""
    caller.require("admin")
    counts = await jobs.store.counts()
    mem = psutil.virtual_memory()
    return {
        "cpu": {"cores": os.cpu_count(), "load_average": list(os.getloadavg())},
        "memory": {
            "total_bytes": mem.total,
            "available_bytes": mem.available,
            "process_rss_bytes": psutil.Process().memory_info().rss,
        },
        "gpu": _gpu(jobs.components),
        "queue_depth": counts.get("queued", 0),
        "jobs": {s: counts.get(s, 0) for s in JOB_STATUSES},
        "max_concurrent_jobs": jobs.settings.max_concurrent_jobs,
        "database": jobs.store.engine.dialect.name,
        # per tenant: the files it sees (uploaded, or used and made by its jobs) and their bytes
        "storage": await jobs.store.storage(),
    }


def _gpu(parts: ComponentsDep) -> dict:
    """This process's backends and model runtime, and those of the worker processes running the jobs."""
    from service.worker_stats import read_stats

    return {**parts.models.summary(), "workers": read_stats(parts.settings)}


@router.head("/healthz", include_in_schema=False)  # load balancers probe with HEAD
@router.get("/healthz", tags=["health"])
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
async def readyz(jobs: JobsDep) -> dict:
    if jobs.draining:  # SIGTERM: out of the load balancer first, while the requests in flight end
        raise AdgraphError("SHUTTING_DOWN", "this server is shutting down", retry_after=1)
    try:
        async with jobs.store.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as e:
        raise AdgraphError("INTERNAL", f"the job database does not answer: {type(e).__name__}") from e
    return {"status": "ready"}


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(jobs: JobsDep, caller: CallerDep, request: Request) -> Response:
    """Prometheus metrics (admin)."""
    caller.require("admin")
    m: Metrics = request.app.state.metrics
    counts = await jobs.store.counts()
    for status in JOB_STATUSES:
        m.jobs.labels(status).set(counts.get(status, 0))
    m.queue_depth.set(counts.get("queued", 0))
    gpu = _gpu(jobs.components)
    m.runtimes = [("api", gpu["runtime"])] if gpu["runtime"] is not None else []
    m.runtimes += [(w["process"], w["runtime"]) for w in gpu["workers"] if w["runtime"] is not None]
    # node timings come from the database, so jobs run by worker processes are counted too
    for row_id, wf, node, seconds in await jobs.store.timings_since(m.timings_seen):
        m.node_seconds.labels(wf, node).observe(seconds)
        m.timings_seen = row_id
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
