"""Jobs: submit, read, list, follow (SSE), cancel, resume, branch, and their checkpoints."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from service.api.deps import ExistingJob, JobsDep
from service.schemas import (
    BranchCreate,
    CheckpointDetail,
    CheckpointOut,
    ErrorResponse,
    JobCreate,
    JobOut,
    JobPage,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}
_DIGITS = re.compile(r"[0-9]+")


@router.post("", status_code=202, response_model=JobOut, responses=ERRORS)
async def submit(body: JobCreate, jobs: JobsDep) -> JobOut:
    """Queue a job. Its input is checked here: a job that exists can run."""
    return JobOut.of(await jobs.submit(body.workflow, body.input))


@router.get("", response_model=JobPage, responses=ERRORS)
async def list_jobs(
    jobs: JobsDep,
    status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")] = None,
    workflow: Annotated[str | None, Query(pattern="^[A-Za-z0-9_.-]{1,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """Newest first; follow `next_cursor` for older pages."""
    return JobPage.of(await jobs.list(status=status, workflow=workflow, limit=limit, cursor=cursor))


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
async def get_job(job_id: str, jobs: JobsDep) -> JobOut:
    return JobOut.of(await jobs.get(job_id))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut, responses=ERRORS)
async def cancel(job_id: str, jobs: JobsDep) -> JobOut:
    """A queued job is cancelled at once; a running one at its next node boundary."""
    return JobOut.of(await jobs.cancel(job_id))


@router.post("/{job_id}/resume", status_code=202, response_model=JobOut, responses=ERRORS)
async def resume(job_id: str, jobs: JobsDep) -> JobOut:
    """Continue a failed or cancelled job from its last checkpoint."""
    return JobOut.of(await jobs.resume(job_id))


@router.post("/{job_id}/branch", status_code=202, response_model=JobOut, responses=ERRORS)
async def branch(job_id: str, body: BranchCreate, jobs: JobsDep) -> JobOut:
    """A new job from one of this job's checkpoints, with some inputs changed; this job is untouched."""
    child = await jobs.branch(
        job_id, checkpoint_id=body.checkpoint_id, from_node=body.from_node, changes=body.input
    )
    return JobOut.of(child)


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut], responses=ERRORS)
async def checkpoints(job_id: str, jobs: JobsDep) -> list[CheckpointOut]:
    """Oldest first, each with the node that wrote it and, where that node made an image, a preview."""
    return [CheckpointOut.of(cp) for cp in await jobs.checkpoints(job_id)]


@router.get("/{job_id}/checkpoints/{checkpoint_id}", response_model=CheckpointDetail, responses=ERRORS)
async def checkpoint(job_id: str, checkpoint_id: str, jobs: JobsDep) -> CheckpointDetail:
    """The state as it was at that checkpoint (images as artifact references)."""
    return CheckpointDetail.of(await jobs.checkpoint(job_id, checkpoint_id))


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}, **ERRORS},
)
async def events(
    job: ExistingJob,
    jobs: JobsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Node started/finished, progress and the job's end, as Server-Sent Events; reconnect with
    `Last-Event-ID` to get only what was missed. The stream ends after the job finishes."""
    # an id past any event (ids are 32-bit) means "seen it all"; anything not digits, "from the start"
    after = min(int(last_event_id), 2**31 - 1) if last_event_id and _DIGITS.fullmatch(last_event_id) else 0
    async for ev in jobs.events(job.id, after):
        yield ServerSentEvent(id=str(ev.id), event=ev.type, raw_data=json.dumps(ev.data, ensure_ascii=False))
