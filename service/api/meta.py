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
        labels = ["model"]
        r = self.registry
        self.gpu_budget = Gauge("adgraph_gpu_budget_bytes", "Model runtime memory budget", registry=r)
        self.gpu_used = Gauge("adgraph_gpu_used_bytes", "Bytes of resident models", registry=r)
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

    def observe_runtime(self, stats: dict) -> None:
        """Copy the model runtime's counters (it keeps the totals; these gauges mirror them)."""
        self.gpu_budget.set(stats["budget_bytes"])
        self.gpu_used.set(stats["used_bytes"])
        resident = set(stats["resident"])
        for name, m in stats["models"].items():
            self.model_resident.labels(name).set(1 if name in resident else 0)
            self.model_loads.labels(name).set(m["loads"])
            self.model_swaps.labels(name).set(m["swaps_in"])
            self.model_evictions.labels(name).set(m["evictions"])
            self.model_bytes_moved.labels(name).set(m["bytes_moved"])
            self.model_wait.labels(name).set(m["wait_seconds"])


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
        "gpu": res.ctx.models.summary() if getattr(res.ctx, "models", None) is not None else None,
        "queue_depth": counts.get("queued", 0),
        "jobs": {s: counts.get(s, 0) for s in JOB_STATUSES},
        "max_concurrent_jobs": res.settings.max_concurrent_jobs,
        "database": res.store.engine.dialect.name,
    }


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
    models = getattr(res.ctx, "models", None)
    if models is not None and models.runtime is not None:
        m.observe_runtime(models.runtime.stats())
    # node timings come from the database, so jobs run by worker processes are counted too
    for row_id, wf, node, seconds in await res.store.timings_since(m.timings_seen):
        m.node_seconds.labels(wf, node).observe(seconds)
        m.timings_seen = row_id
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
