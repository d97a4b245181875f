"""Jobs: submit, read, list, follow (SSE), cancel, resume, branch, delete, and their checkpoints."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from service.api.deps import CallerDep, ClosedAfter, ExistingJob, JobsDep, StreamSlot, zip_response
from service.schemas import (
    BranchCreate,
    CheckpointDetail,
    CheckpointOut,
    ErrorResponse,
    JobCreate,
    JobOut,
    JobPage,
    VariantsOut,
)
from service.variants import Variants

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}
_DIGITS = re.compile(r"[0-9]+")


@router.post("", status_code=202, response_model=JobOut, responses=ERRORS)
async def submit(
    body: JobCreate,
    jobs: JobsDep,
    caller: CallerDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Any:
    """Queue a job. Its input is checked here: a job that exists can run. A repeat with the same
    `Idempotency-Key` within 24 h gets the first answer and makes no second job."""

    async def answer() -> tuple[int, Any]:
        return 202, JobOut.of(
            await jobs.submit(caller, body.workflow, body.input, priority=body.priority)
        ).model_dump(mode="json")

    response.status_code, out = await jobs.once(
        caller, "POST /v1/jobs", idempotency_key, body.model_dump(), answer
    )
    return out


@router.get("", response_model=JobPage, responses=ERRORS)
async def list_jobs(
    jobs: JobsDep,
    caller: CallerDep,
    status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")] = None,
    workflow: Annotated[str | None, Query(pattern="^[A-Za-z0-9_.-]{1,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """Newest first; follow `next_cursor` for older pages."""
    return JobPage.of(await jobs.list(caller, status=status, workflow=workflow, limit=limit, cursor=cursor))


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
async def get_job(job: ExistingJob) -> JobOut:
    return JobOut.of(job)


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=ERRORS)
async def delete(job_id: str, jobs: JobsDep, caller: CallerDep) -> Response:
    """Remove a finished job with its checkpoints and events, and its files no other job of the tenant
    uses and the tenant did not upload; a queued or running one is 409 JOB_NOT_DELETABLE (cancel it
    first). Jobs branched from it keep working."""
    await jobs.delete(caller, job_id)
    return Response(status_code=204)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut, responses=ERRORS)
async def cancel(job_id: str, jobs: JobsDep, caller: CallerDep) -> JobOut:
    """A queued job is cancelled at once; a running one at its next node boundary."""
    return JobOut.of(await jobs.cancel(caller, job_id))


@router.post("/{job_id}/resume", status_code=202, response_model=JobOut, responses=ERRORS)
async def resume(job_id: str, jobs: JobsDep, caller: CallerDep) -> JobOut:
    """Continue a failed or cancelled job from its last checkpoint."""
    return JobOut.of(await jobs.resume(caller, job_id))


@router.post("/{job_id}/branch", status_code=202, response_model=JobOut, responses=ERRORS)
async def branch(job_id: str, body: BranchCreate, jobs: JobsDep, caller: CallerDep) -> JobOut:
    """A new job from one of this job's checkpoints, with some inputs changed; this job is untouched."""
    child = await jobs.branch(
        caller, job_id, checkpoint_id=body.checkpoint_id, from_node=body.from_node, changes=body.input
    )
    return JobOut.of(child)


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut], responses=ERRORS)
async def checkpoints(job_id: str, jobs: JobsDep, caller: CallerDep) -> list[CheckpointOut]:
    """Oldest first, each with the node that wrote it and, where that node made an image, a preview."""
    return [CheckpointOut.of(cp) for cp in await jobs.checkpoints(caller, job_id)]


@router.get("/{job_id}/checkpoints/{checkpoint_id}", response_model=CheckpointDetail, responses=ERRORS)
async def checkpoint(job_id: str, checkpoint_id: str, jobs: JobsDep, caller: CallerDep) -> CheckpointDetail:
    """The state as it was at that checkpoint (images as artifact references)."""
    return CheckpointDetail.of(await jobs.checkpoint(caller, job_id, checkpoint_id))


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}, **ERRORS},
)
async def events(
    job: ExistingJob,
    jobs: JobsDep,
    caller: CallerDep,
    _slot: StreamSlot,
    closed_after: ClosedAfter,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Node started/finished, progress and the job's end, as Server-Sent Events; reconnect with
    `Last-Event-ID` to get only what was missed. The stream ends after the job finishes."""
    # an id past any event (ids are 32-bit) means "seen it all"; anything not digits, "from the start"
    after = min(int(last_event_id), 2**31 - 1) if last_event_id and _DIGITS.fullmatch(last_event_id) else 0
    async for ev in closed_after(jobs.events(caller, job.id, after)):
        yield ServerSentEvent(id=str(ev.id), event=ev.type, raw_data=json.dumps(ev.data, ensure_ascii=False))


@router.get("/{job_id}/variants", response_model=VariantsOut, responses=ERRORS)
async def variants(job_id: str, jobs: JobsDep, caller: CallerDep) -> VariantsOut:
    """The variants (copies x sizes) of the set this job is one of, in order, each with its job once made
    (a job that asked for none: itself alone); the set's status, counts and percent come from them."""
    return VariantsOut.of(await Variants(jobs).get(caller, job_id))


@router.get(
    "/{job_id}/variants/zip",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}, **ERRORS},
)
async def variants_zip(job_id: str, jobs: JobsDep, caller: CallerDep) -> FileResponse:
    """A ZIP of every succeeded variant's ad (`variant-01-1080x1080.png`, numbered from 1) and
    manifest.json (each variant's size, copy, job, status and file)."""
    return await zip_response(
        lambda path: Variants(jobs).write_zip(caller, job_id, path), lambda view: f"ads-{view.job.id[:8]}.zip"
    )
