"""Request and response models: what the REST API takes and returns, and what the CLI prints."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ApiErrorBody(ErrorBody):
    request_id: str | None = Field(
        None, description="The request's X-Request-ID, to quote when reporting it."
    )


class ErrorResponse(BaseModel):
    error: ApiErrorBody


class ArtifactOut(BaseModel):
    id: str
    mime: str
    width: int | None
    height: int | None
    bytes: int


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow: str = Field(description="Workflow name, see GET /v1/workflows")
    input: dict[str, Any] = Field(
        description="The workflow's input (GET /v1/workflows/{name} has its schema)"
    )
    priority: int = Field(
        0, ge=-10, le=10, description="Higher is taken first (-10..10); among equals, the older first"
    )


class Attempt(BaseModel):
    attempt: int
    outcome: Literal["succeeded", "failed", "cancelled", "retrying", "requeued", "lost"] = Field(
        description="retrying: a transient failure, tried again after a backoff; requeued: its worker "
        "stopped (SIGTERM) or lost its lease, another continues it; lost: its worker died"
    )
    worker: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    error: str | None = Field(None, description="The error code of a failed attempt")
    retry_at: str | None = None
    reason: str | None = None


class BranchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint_id: str | None = Field(None, max_length=64)
    from_node: str | None = Field(None, max_length=32)
    input: dict[str, Any] = Field(default_factory=dict, description='Inputs to change, e.g. {"headline": …}')


class Progress(BaseModel):
    percent: int
    node: str | None
    message: str
    eta_seconds: float | None


class NodeRun(BaseModel):
    name: str
    status: Literal["running", "succeeded", "failed", "interrupted"]
    """`interrupted`: it stopped before it finished (the process running it died, or a cancel arrived
    inside the step); it runs again on the next attempt."""
    attempt: int
    started_at: str | None
    seconds: float | None
    cached: bool = False
    """It reused an earlier result (the same photo's cut-out through the same backend) instead of working."""


class ResultArtifact(BaseModel):
    id: str
    url: str
    mime: str
    backends: dict[str, str] = {}
    """The backend of each node that shaped this image, e.g. {"segment": "birefnet", "background": "flux"}."""


class Parent(BaseModel):
    job_id: str
    checkpoint_id: str | None


class JobOut(BaseModel):
    id: str
    workflow: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: Progress
    nodes: list[NodeRun]
    result: dict[str, ResultArtifact] | None
    error: ErrorBody | None
    parent: Parent | None
    priority: int = 0
    attempts: int = Field(0, description="Times a worker has taken it (a retry, a resume, a crash add one)")
    attempt_log: list[Attempt] = Field(default_factory=list, description="How each attempt ended")
    variant_of: str | None = Field(
        None, description="The job that asked for the variants this one is one of (itself for variant 0)"
    )
    variant: int | None = Field(None, description="Which variant, from 0 (see GET /v1/jobs/{id}/variants)")
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, job: Any) -> JobOut:
        return cls(
            id=job.id,
            workflow=job.workflow,
            status=job.status,
            progress=job.progress,
            nodes=job.nodes or [],
            result=job.result,
            error=job.error and {"details": {}, **job.error},
            parent={"job_id": job.parent_job_id, "checkpoint_id": job.parent_checkpoint_id}
            if job.parent_job_id
            else None,
            priority=job.priority or 0,
            attempts=job.attempts or 0,
            attempt_log=job.attempt_log or [],
            variant_of=job.variant_of,
            variant=job.variant,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class VariantOut(BaseModel):
    variant: int = Field(description="From 0; variant 0 is the job that asked for them")
    size: str | None = None
    headline: str | None = None
    subline: str | None = None
    cta: str | None = None
    job_id: str | None = Field(description="Null until the job it is branched from has succeeded")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] = Field(
        description="Its job's; one not made yet is queued, or failed/cancelled with the job it waits on"
    )
    percent: int
    error: ErrorBody | None
    ad: ResultArtifact | None = Field(None, description="Its image, once it succeeded")


class VariantsOut(BaseModel):
    job_id: str = Field(description="Variant 0: the job that asked for them")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "partial"]
    counts: dict[str, int]
    percent: int
    variants: list[VariantOut]

    @classmethod
    def of(cls, view: Any) -> VariantsOut:
        """From a `service.variants.VariantSet`."""
        out = []
        for v in view.variants:
            j = v.job
            percent = (
                100 if v.status == "succeeded" else int(((j.progress or {}).get("percent") or 0) if j else 0)
            )
            label = {k: v.spec.label.get(k) for k in ("size", "headline", "subline", "cta")}
            out.append(
                VariantOut(
                    variant=v.spec.index,
                    **label,
                    job_id=j.id if j else None,
                    status=v.status,  # type: ignore[arg-type]
                    percent=percent,
                    error=j.error and {"details": {}, **j.error} if j else None,
                    ad=(j.result or {}).get("ad") if j and v.status == "succeeded" else None,
                )
            )
        return cls(
            job_id=view.job.id, status=view.status, counts=view.counts, percent=view.percent, variants=out
        )


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")

    @classmethod
    def of(cls, page: Any) -> JobPage:
        return cls(jobs=[JobOut.of(j) for j in page.jobs], next_cursor=page.next_cursor)


class CheckpointOut(BaseModel):
    id: str
    step: int
    node: str
    created_at: str
    parent: str | None
    next: list[str]
    preview: ResultArtifact | None

    @classmethod
    def of(cls, cp: Any) -> CheckpointOut:
        """From a `service.jobs.Checkpoint`."""
        info, ref = cp.info, cp.preview
        return cls(
            id=info.id,
            step=info.step,
            node=info.node,
            created_at=info.created_at,
            parent=info.parent_id,
            next=list(info.next),
            preview=ResultArtifact(id=ref.id, url=f"/v1/artifacts/{ref.id}", mime=ref.mime) if ref else None,
        )


class CheckpointDetail(CheckpointOut):
    values: dict[str, Any]

    @classmethod
    def of(cls, cp: Any) -> CheckpointDetail:
        return cls(**CheckpointOut.of(cp).model_dump(), values=jsonable(cp.values or {}))


def jsonable(value: Any) -> Any:
    """Graph state as JSON: models as their JSON, images as artifact references."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class WorkflowSummary(BaseModel):
    name: str
    nodes: list[str]


class WorkflowDetail(WorkflowSummary):
    input_schema: dict[str, Any]
    edges: list[tuple[str, str]]


class FontOut(BaseModel):
    family: str
    style: str
    weight: int
    hangul: bool


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow: Literal["ad"] = Field("ad", description="The workflow of every row's job")
    rows: list[dict[str, Any]] = Field(
        description="1 to 200 rows, each the workflow's input: product_image (an artifact id), headline, "
        "and optionally subline, cta, background_prompt, size, seed"
    )
    priority: int = Field(0, ge=-10, le=10, description="Every row's job's priority (-10..10)")


class BatchCounts(BaseModel):
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class BatchOut(BaseModel):
    id: str
    workflow: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "partial"] = Field(
        description="From its jobs: queued (none started), running, partial (all ended, some not succeeded)"
    )
    rows: int
    counts: BatchCounts
    percent: int = Field(description="The mean of its jobs' percent")
    eta_seconds: float | None = Field(
        description="Running jobs' ETAs plus a typical job's time per queued one, over "
        "ADGRAPH_MAX_CONCURRENT_JOBS; null while unknown"
    )
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, view: Any) -> BatchOut:
        """From a `service.batches.BatchView`."""
        b = view.batch
        return cls(
            id=b.id,
            workflow=b.workflow,
            status=view.status,
            rows=b.rows,
            counts=view.counts,
            percent=view.percent,
            eta_seconds=view.eta_seconds,
            created_at=b.created_at,
            updated_at=view.updated_at,
        )


class BatchRow(BaseModel):
    row: int
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    percent: int
    error: ErrorBody | None
    ad: ResultArtifact | None = Field(None, description="The row's image, once it succeeded")


class BatchJobs(BaseModel):
    batch_id: str
    jobs: list[BatchRow]

    @classmethod
    def of(cls, view: Any) -> BatchJobs:
        return cls(
            batch_id=view.batch.id,
            jobs=[
                BatchRow(
                    row=j.batch_row,
                    job_id=j.id,
                    status=j.status,
                    percent=100 if j.status == "succeeded" else int((j.progress or {}).get("percent") or 0),
                    error=j.error and {"details": {}, **j.error},
                    ad=(j.result or {}).get("ad") if j.status == "succeeded" else None,
                )
                for j in view.jobs
            ],
        )
