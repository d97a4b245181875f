"""Workflows, fonts, the system, health and metrics."""

from __future__ import annotations

import os

import psutil
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from sqlalchemy import text

from graph.errors import AdgraphError
from service.api.deps import Res
from service.api.schemas import ErrorResponse, FontOut, WorkflowDetail, WorkflowSummary
from service.db import JOB_STATUSES
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
        labels = ["process", "model"]
        r = self.registry
        self.gpu_budget = Gauge("adgraph_gpu_budget_bytes", "Model runtime budget", ["process"], registry=r)
        self.gpu_used = Gauge("adgraph_gpu_used_bytes", "Bytes of resident models", ["process"], registry=r)
        self.model_resident = Gauge(
            "adgraph_model_resident", "1 if the model is on the device", labels, registry=r
        )
        self.model_loads = Gauge("adgraph_model_loads", "Loads from disk", labels, registry=r)
        self.model_swaps = Gauge("adgraph_model_swaps_in", "Moves back from host RAM", labels, registry=r)
        self.model_evictions = Gauge("adgraph_model_evictions", "Evictions", labels, registry=r)
        self.model_bytes_moved = Gauge(
            "adgraph_model_bytes_moved", "Bytes copied host->device", labels, registry=r
        )
        self.model_wait = Gauge(
            "adgraph_model_wait_seconds", "Time waited for the device", labels, registry=r
        )

    def observe_runtime(self, process: str, stats: dict) -> None:
        """Copy a model runtime's counters (it keeps the totals; these gauges mirror them)."""
        self.gpu_budget.labels(process).set(stats["budget_bytes"])
        self.gpu_used.labels(process).set(stats["used_bytes"])
        resident = set(stats["resident"])
        for name, m in stats["models"].items():
            self.model_resident.labels(process, name).set(1 if name in resident else 0)
            self.model_loads.labels(process, name).set(m["loads"])
            self.model_swaps.labels(process, name).set(m["swaps_in"])
            self.model_evictions.labels(process, name).set(m["evictions"])
            self.model_bytes_moved.labels(process, name).set(m["bytes_moved"])
            self.model_wait.labels(process, name).set(m["wait_seconds"])


@router.get("/v1/workflows", response_model=list[WorkflowSummary], tags=["workflows"])
async def workflows() -> list[WorkflowSummary]:
    return [WorkflowSummary(name=w.name, nodes=list(w.nodes)) for w in WORKFLOWS.values()]


@router.get(
    "/v1/workflows/{name}",
    response_model=WorkflowDetail,
    tags=["workflows"],
    responses={404: {"model": ErrorResponse}},
)
async def workflow(name: str, res: Res) -> WorkflowDetail:
    if name not in WORKFLOWS:
        raise AdgraphError("NOT_FOUND", f"no workflow {name!r}; the workflows are {', '.join(WORKFLOWS)}")
    w = WORKFLOWS[name]
    drawable = res.graphs[name].get_graph()
    edges = [(e.source, e.target) for e in drawable.edges]
    return WorkflowDetail(
        name=w.name, nodes=list(w.nodes), input_schema=w.input_model.model_json_schema(), edges=edges
    )


@router.get("/v1/fonts", response_model=list[FontOut], tags=["fonts"])
async def fonts(res: Res) -> list[FontOut]:
    return [
        FontOut(family=f.family, style=f.style, weight=f.weight, hangul=f.hangul)
        for f in res.ctx.designer.fonts.faces()
    ]


@router.get("/v1/system", tags=["system"])
async def system(res: Res) -> dict:
    counts = await res.store.counts()
    mem = psutil.virtual_memory()
    return {
        "cpu": {"cores": os.cpu_count(), "load_average": list(os.getloadavg())},
        "memory": {
            "total_bytes": mem.total,
            "available_bytes": mem.available,
            "process_rss_bytes": psutil.Process().memory_info().rss,
        },
        "gpu": _gpu(res),
        "queue_depth": counts.get("queued", 0),
        "jobs": {s: counts.get(s, 0) for s in JOB_STATUSES},
        "max_concurrent_jobs": res.settings.max_concurrent_jobs,
        "database": res.store.engine.dialect.name,
    }


def _gpu(res: Res) -> dict | None:
    """This process's backends and model runtime, and those of the worker processes running the jobs."""
    from service.context import read_stats

    models = getattr(res.ctx, "models", None)
    if models is None:
        return None
    return {**models.summary(), "workers": read_stats(res.settings)}


@router.get("/healthz", tags=["health"])
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
async def readyz(res: Res) -> dict:
    try:
        async with res.store.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as e:
        raise AdgraphError("INTERNAL", f"the job database does not answer: {type(e).__name__}") from e
    return {"status": "ready"}


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(res: Res) -> Response:
    m: Metrics = res.metrics
    counts = await res.store.counts()
    for status in JOB_STATUSES:
        m.jobs.labels(status).set(counts.get(status, 0))
    m.queue_depth.set(counts.get("queued", 0))
    gpu = _gpu(res)
    if gpu is not None:
        if gpu["runtime"] is not None:
            m.observe_runtime("api", gpu["runtime"])
        for worker in gpu["workers"]:
            if worker["runtime"] is not None:
                m.observe_runtime(worker["process"], worker["runtime"])
    # node timings come from the database, so jobs run by worker processes are counted too
    for row_id, wf, node, seconds in await res.store.timings_since(m.timings_seen):
        m.node_seconds.labels(wf, node).observe(seconds)
        m.timings_seen = row_id
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
