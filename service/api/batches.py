"""Batches (a catalog: one ad job per row): create, read, list their jobs, cancel, resume, zip."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import FileResponse

from service.api.deps import CallerDep, JobsDep, zip_response
from service.batches import Batches
from service.schemas import BatchCreate, BatchJobs, BatchOut, ErrorResponse

router = APIRouter(prefix="/v1/batches", tags=["batches"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}


def _batches(request: Request) -> Batches:
    return Batches(request.app.state.jobs)


@router.post("", status_code=202, response_model=BatchOut, responses=ERRORS)
async def create(
    body: BatchCreate,
    request: Request,
    jobs: JobsDep,
    caller: CallerDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Any:
    """One queued job per row, in order. Every row is checked first: one bad row refuses the whole batch
    (422 INVALID_INPUT, `details.rows` naming each bad row from 1) and nothing is made. A repeat with the
    same `Idempotency-Key` within 24 h gets the first answer and makes no second batch."""

    async def answer() -> tuple[int, Any]:
        view = await _batches(request).create(caller, body.workflow, body.rows, priority=body.priority)
        return 202, BatchOut.of(view).model_dump(mode="json")

    response.status_code, out = await jobs.once(
        caller, "POST /v1/batches", idempotency_key, body.model_dump(), answer
    )
    return out


@router.get("/{batch_id}", response_model=BatchOut, responses=ERRORS)
async def get_batch(batch_id: str, request: Request, caller: CallerDep) -> BatchOut:
    """Status, counts, percent and ETA, from its jobs."""
    return BatchOut.of(await _batches(request).get(caller, batch_id))


@router.get("/{batch_id}/jobs", response_model=BatchJobs, responses=ERRORS)
async def batch_jobs(batch_id: str, request: Request, caller: CallerDep) -> BatchJobs:
    """Its jobs in row order: row, job id, status, percent, error, the row's ad once made."""
    return BatchJobs.of(await _batches(request).list_jobs(caller, batch_id))


@router.post("/{batch_id}/cancel", status_code=202, response_model=BatchOut, responses=ERRORS)
async def cancel(batch_id: str, request: Request, caller: CallerDep) -> BatchOut:
    """Queued jobs are cancelled at once, running ones at their next node boundary."""
    return BatchOut.of(await _batches(request).cancel(caller, batch_id))


@router.post("/{batch_id}/resume", status_code=202, response_model=BatchOut, responses=ERRORS)
async def resume(batch_id: str, request: Request, caller: CallerDep) -> BatchOut:
    """Each failed or cancelled job continues from its last checkpoint; succeeded ones are untouched."""
    return BatchOut.of(await _batches(request).resume(caller, batch_id))


@router.get(
    "/{batch_id}/zip",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}, **ERRORS},
)
async def zip_file(batch_id: str, request: Request, caller: CallerDep) -> FileResponse:
    """A ZIP of every succeeded row's ad (`row-003-<job id's first 8>.png`) with manifest.json and
    index.csv (every row's job, status, error and file). Built in a temporary file, removed once sent."""
    return await zip_response(
        lambda path: _batches(request).write_zip(caller, batch_id, path),
        lambda view: f"batch-{view.batch.id[:8]}.zip",
    )
