"""Jobs: submit, read, list, follow (SSE), cancel, resume, branch, and their checkpoints."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from checkpoints.history import describe, find_snapshot, seed_branch, thread_config
from kernel.errors import AdgraphError
from service.api.deps import Res, Resources
from service.api.schemas import (
    BranchCreate,
    CheckpointDetail,
    CheckpointOut,
    ErrorResponse,
    JobCreate,
    JobOut,
    JobPage,
    ResultArtifact,
)
from service.jobs import new_job_id
from service.requests import parse
from service.store import check_job_id
from service.workflows import WORKFLOWS, Workflow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
STREAM_LOOK_S = 1.0
"""How often a stream reads its job's events with no wake-up (should the `EventTail` fail)."""
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}


def _workflow(name: str) -> Workflow:
    if name not in WORKFLOWS:
        raise AdgraphError(
            "INVALID_INPUT", f"unknown workflow {name!r}; choose one of {', '.join(WORKFLOWS)}"
        )
    return WORKFLOWS[name]


@router.post("", status_code=202, response_model=JobOut, responses=ERRORS)
async def submit(body: JobCreate, res: Res) -> JobOut:
    """Queue a job. Its input is checked here: a job that exists can run."""
    wf = _workflow(body.workflow)
    opts = parse(wf.input_model, body.input)
    # What the input refers to (photos, a font) is checked here too: ARTIFACT_NOT_FOUND before any job.
    opts = await asyncio.to_thread(wf.prepare, opts, res.context(wf.name))
    job = await res.store.create(new_job_id(), wf.name, opts.model_dump(mode="json"))
    res.runner.wake()
    return JobOut.of(job)


@router.get("", response_model=JobPage, responses=ERRORS)
async def list_jobs(
    res: Res,
    status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")] = None,
    workflow: Annotated[str | None, Query(pattern="^[A-Za-z0-9_.-]{1,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """Newest first; follow `next_cursor` for older pages."""
    before = _decode_cursor(cursor) if cursor else None
    jobs = await res.store.list(status=status, workflow=workflow, limit=limit + 1, before=before)
    nxt = _encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return JobPage(jobs=[JobOut.of(j) for j in jobs[:limit]], next_cursor=nxt)


def _encode_cursor(job: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([job.created_at.isoformat(), job.id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return dt.datetime.fromisoformat(created), check_job_id(job_id)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise AdgraphError("INVALID_INPUT", "malformed cursor: pass next_cursor back as it came") from None


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
async def get_job(job_id: str, res: Res) -> JobOut:
    return JobOut.of(await res.store.get(job_id))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut, responses=ERRORS)
async def cancel(job_id: str, res: Res) -> JobOut:
    """A queued job is cancelled at once; a running one at its next node boundary."""
    job = await res.store.get(job_id)
    if await res.store.transition(job.id, ["queued"], status="cancelled"):
        await res.runner.emit(job.id, "job_finished", {"status": "cancelled"})
    elif await res.store.transition(job.id, ["running"], cancel_requested=True):
        res.runner.cancel_running(job.id)
    else:
        raise AdgraphError(
            "JOB_NOT_CANCELLABLE",
            f"job {job.id} is {job.status}; only queued or running jobs can be cancelled",
        )
    return JobOut.of(await res.store.get(job.id))


@router.post("/{job_id}/resume", status_code=202, response_model=JobOut, responses=ERRORS)
async def resume(job_id: str, res: Res) -> JobOut:
    """Continue a failed or cancelled job from its last checkpoint."""
    job = await res.store.get(job_id)
    if not await res.store.transition(
        job.id, ["failed", "cancelled"], status="queued", error=None, cancel_requested=False
    ):
        raise AdgraphError(
            "JOB_NOT_RESUMABLE",
            f"job {job.id} is {job.status}; only failed or cancelled jobs "
            "can be resumed (branch a finished one instead)",
        )
    await res.runner.emit(job.id, "job_queued", {"status": "queued", "resumed": True})
    res.runner.wake()
    return JobOut.of(await res.store.get(job.id))


@router.post("/{job_id}/branch", status_code=202, response_model=JobOut, responses=ERRORS)
async def branch(job_id: str, body: BranchCreate, res: Res) -> JobOut:
    """A new job from one of this job's checkpoints, with some inputs changed; this job is untouched."""
    job = await res.store.get(job_id)
    wf = WORKFLOWS[job.workflow]
    graph = res.graphs[job.workflow]
    source = await find_snapshot(
        graph, job.id, wf.nodes, checkpoint_id=body.checkpoint_id, node=body.from_node
    )
    new_input, overrides = wf.branch(source.values, body.input, res.context(wf.name))
    new_id = new_job_id()
    checkpoint_id = source.config["configurable"]["checkpoint_id"]
    parent = {"job_id": job.id, "checkpoint_id": checkpoint_id}
    await seed_branch(graph, source, new_id, wf.nodes, overrides, wf.consumers, {"parent": parent})
    child = await res.store.create(new_id, job.workflow, new_input, parent=(job.id, checkpoint_id))
    res.runner.wake()
    return JobOut.of(child)


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut], responses=ERRORS)
async def checkpoints(job_id: str, res: Res) -> list[CheckpointOut]:
    """Oldest first, each with the node that wrote it and, where that node made an image, a preview."""
    job = await res.store.get(job_id)
    wf = WORKFLOWS[job.workflow]
    snaps = [s async for s in res.graphs[job.workflow].aget_state_history(thread_config(job.id))]
    return [_checkpoint_out(wf, s) for s in reversed(snaps)]


@router.get("/{job_id}/checkpoints/{checkpoint_id}", response_model=CheckpointDetail, responses=ERRORS)
async def checkpoint(job_id: str, checkpoint_id: str, res: Res) -> CheckpointDetail:
    """The state as it was at that checkpoint (images as artifact references)."""
    job = await res.store.get(job_id)
    wf = WORKFLOWS[job.workflow]
    snap = await find_snapshot(res.graphs[job.workflow], job.id, wf.nodes, checkpoint_id=checkpoint_id)
    out = _checkpoint_out(wf, snap)
    return CheckpointDetail(**out.model_dump(), values={k: _jsonable(v) for k, v in snap.values.items()})


def _checkpoint_out(wf: Workflow, snap: Any) -> CheckpointOut:
    info = describe(snap, wf.nodes)
    preview = None
    if (key := wf.outputs.get(info.node)) and (ref := snap.values.get(key)) is not None:
        preview = ResultArtifact(id=ref.id, url=f"/v1/artifacts/{ref.id}", mime=ref.mime)
    return CheckpointOut(
        id=info.id,
        step=info.step,
        node=info.node,
        created_at=info.created_at,
        parent=info.parent_id,
        next=list(info.next),
        preview=preview,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}, **ERRORS},
)
async def events(
    job_id: str,
    request: Request,
    res: Res,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """Node started/finished, progress and the job's end, as Server-Sent Events; reconnect with
    `Last-Event-ID` to get only what was missed. The stream ends after the job finishes."""
    job = await res.store.get(job_id)
    # an id past any event (ids are 32-bit) means "seen it all"; anything not digits, "from the start"
    after = min(int(last_event_id), 2**31 - 1) if last_event_id and _DIGITS.fullmatch(last_event_id) else 0
    return StreamingResponse(
        _event_stream(res, job.id, after, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


_DIGITS = re.compile(r"[0-9]+")


async def _event_stream(res: Resources, job_id: str, after: int, request: Request) -> AsyncIterator[str]:
    wake = res.bus.subscribe(job_id)  # subscribe first, then replay: nothing falls in between
    try:
        last = after
        finished = False
        replay = await res.store.events(job_id, after)
        for ev in replay:
            last = ev.id
            yield _sse(ev.id, ev.type, ev.data)
            finished = ev.type == "job_finished"  # a resumed job goes on after an earlier end
        if not replay and after:  # a reconnect (EventSource always reconnects) after the job's end
            latest = await res.store.latest_event(job_id)
            finished = latest is not None and latest.type == "job_finished"
        if finished:
            return
        idle_since = time.monotonic()
        while True:
            # The database is the one ordered record of a job's events; the bus only says "look now".
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=STREAM_LOOK_S)
            wake.clear()
            for ev in await res.store.events(job_id, last):
                last = ev.id
                idle_since = time.monotonic()
                yield _sse(ev.id, ev.type, ev.data)
                if ev.type == "job_finished":
                    return
            if time.monotonic() - idle_since > 15:
                if await request.is_disconnected():
                    return
                idle_since = time.monotonic()
                yield ": keep-alive\n\n"
    finally:
        res.bus.unsubscribe(job_id, wake)


def _sse(event_id: int, type_: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {type_}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
