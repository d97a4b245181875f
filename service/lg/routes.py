"""The LangGraph Platform API under /lg: what langgraph_sdk and LangGraph Studio call, translated onto
adgraph's jobs through `Threads` and `Jobs` (one run = one job, a fork = a branch). Same keys (the SDK's
`x-api-key`, or Bearer), same tenants; JSON bodies are read whatever their Content-Type (Studio sends
`text/plain`)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from kernel.errors import AdgraphError
from service.accounts import Caller
from service.api.deps import CallerDep, ClosedAfter, JobsDep, StreamSlot
from service.db import Job
from service.jobs import Jobs, parse
from service.lg import wire
from service.schemas import jsonable
from service.threads import Threads, workflow_of_assistant
from service.workflows import WORKFLOWS

router = APIRouter(prefix="/lg", tags=["langgraph"])
SSE = {200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}}
_EVENT_ID = re.compile(r"^([0-9]{1,10})-([0-9]{1,3})$")
B = TypeVar("B", bound=BaseModel)


async def body(request: Request, model: type[B]) -> B:
    """The request's JSON body as `model`, whatever its Content-Type; an empty body is `{}`."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AdgraphError("INVALID_INPUT", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise AdgraphError("INVALID_INPUT", "the body must be a JSON object")
    return parse(model, data)  # type: ignore[no-any-return]


def _threads(jobs: JobsDep) -> Threads:
    return Threads(jobs)


ThreadsDep = Annotated[Threads, Depends(_threads)]


# -- server ------------------------------------------------------------------------------------------


@router.get("/ok")
async def ok() -> dict[str, Any]:
    return {"ok": True}


@router.get("/info")
async def info() -> dict[str, Any]:
    return {
        "version": "adgraph-0.1.0",
        "langgraph_py_version": _langgraph_version(),
        "flags": {"assistants": True, "crons": False, "langsmith": False, "store": False},
        "host": {"kind": "self-hosted", "project_id": None, "revision_id": None, "tenant_id": None},
    }


def _langgraph_version() -> str:
    from importlib.metadata import version

    return version("langgraph")


# -- assistants: one per workflow, built in -------------------------------------------------------------


@router.post("/assistants/search")
async def search_assistants(request: Request, caller: CallerDep) -> list[dict[str, Any]]:
    q = await body(request, wire.AssistantSearch)
    caller.require("read")
    found = [
        wire.assistant(name)
        for name in WORKFLOWS
        if q.graph_id in (None, name)
        and q.name in (None, name)
        and all(wire.assistant(name)["metadata"].get(k) == v for k, v in (q.metadata or {}).items())
    ]
    return found[q.offset : q.offset + q.limit]


@router.post("/assistants/count")
async def count_assistants(request: Request, caller: CallerDep) -> int:
    return len(await search_assistants(request, caller))


@router.get("/assistants/{assistant}")
async def get_assistant(assistant: str, caller: CallerDep) -> dict[str, Any]:
    caller.require("read")
    return wire.assistant(workflow_of_assistant(assistant))


@router.get("/assistants/{assistant}/graph")
async def get_graph(
    assistant: str, jobs: JobsDep, caller: CallerDep, xray: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    caller.require("read")
    graph = jobs.graphs[workflow_of_assistant(assistant)]
    depth: int | bool = int(xray) if xray and xray.isdigit() else xray in ("true", "True")
    return graph.get_graph(xray=depth).to_json()


@router.get("/assistants/{assistant}/schemas")
async def get_schemas(assistant: str, jobs: JobsDep, caller: CallerDep) -> dict[str, Any]:
    """The input schema is the job input's (as `POST /v1/jobs` takes it: the photo as an artifact id)."""
    caller.require("read")
    name = workflow_of_assistant(assistant)
    graph = jobs.graphs[name]
    return {
        "graph_id": name,
        "input_schema": WORKFLOWS[name].input_model.model_json_schema(),
        "output_schema": _schema(graph.get_output_jsonschema),
        "state_schema": _schema(graph.get_output_jsonschema),
        "config_schema": {},
        "context_schema": {},
    }


def _schema(make: Any) -> dict[str, Any]:
    try:
        return make()  # type: ignore[no-any-return]
    except Exception:  # a state type pydantic cannot describe: no schema rather than no answer
        return {}


@router.get("/assistants/{assistant}/subgraphs")
async def get_subgraphs(assistant: str, caller: CallerDep) -> dict[str, Any]:
    caller.require("read")
    workflow_of_assistant(assistant)
    return {}


# -- threads ---------------------------------------------------------------------------------------------


@router.post("/threads")
async def create_thread(request: Request, threads: ThreadsDep, caller: CallerDep) -> dict[str, Any]:
    q = await body(request, wire.ThreadCreate)
    view = await threads.create(caller, thread_id=q.thread_id, metadata=q.metadata, if_exists=q.if_exists)
    return wire.thread(view)


@router.post("/threads/search")
async def search_threads(request: Request, threads: ThreadsDep, caller: CallerDep) -> list[dict[str, Any]]:
    q = await body(request, wire.ThreadSearch)
    views = await threads.search(caller, status=q.status, metadata=q.metadata, limit=q.limit, offset=q.offset)
    return [wire.thread(v) for v in views]


@router.get("/threads/{thread_id}")
async def get_thread(thread_id: str, threads: ThreadsDep, caller: CallerDep) -> dict[str, Any]:
    view = await threads.get(caller, thread_id)
    now = await threads.state(caller, view.id)
    return wire.thread(view, jsonable(now.checkpoint.values or {}) if now.checkpoint else None)


@router.patch("/threads/{thread_id}")
async def patch_thread(thread_id: str, request: Request, threads: ThreadsDep, caller: CallerDep) -> Any:
    q = await body(request, wire.ThreadPatch)
    return wire.thread(await threads.update(caller, thread_id, q.metadata))


@router.delete("/threads/{thread_id}", status_code=204, response_class=Response)
async def delete_thread(thread_id: str, threads: ThreadsDep, caller: CallerDep) -> Response:
    await threads.delete(caller, thread_id)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/state")
async def get_state(thread_id: str, threads: ThreadsDep, caller: CallerDep) -> dict[str, Any]:
    return wire.state(await threads.state(caller, thread_id))


@router.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_state_at(thread_id: str, checkpoint_id: str, threads: ThreadsDep, caller: CallerDep) -> Any:
    return wire.state(await threads.state(caller, thread_id, checkpoint_id))


@router.post("/threads/{thread_id}/state/checkpoint")
async def post_state_at(thread_id: str, request: Request, threads: ThreadsDep, caller: CallerDep) -> Any:
    q = await body(request, wire.StateQuery)
    cid = q.checkpoint_id or (q.checkpoint.checkpoint_id if q.checkpoint else None)
    return wire.state(await threads.state(caller, thread_id, cid))


@router.post("/threads/{thread_id}/state")
async def update_state(thread_id: str, request: Request, threads: ThreadsDep, caller: CallerDep) -> Any:
    """Stage a fork (nothing runs until a run names the returned checkpoint, or a run with no input)."""
    q = await body(request, wire.StateUpdate)
    cid = q.checkpoint_id or (q.checkpoint.checkpoint_id if q.checkpoint else None)
    staged = await threads.stage(caller, thread_id, values=q.values, as_node=q.as_node, checkpoint_id=cid)
    return {"checkpoint": wire.checkpoint_ref(thread_id, staged)}


@router.post("/threads/{thread_id}/history")
async def post_history(thread_id: str, request: Request, threads: ThreadsDep, caller: CallerDep) -> Any:
    q = await body(request, wire.HistoryQuery)
    before = q.before.checkpoint_id if isinstance(q.before, wire.CheckpointRef) else q.before
    return [wire.state(s) for s in await threads.history(caller, thread_id, limit=q.limit, before=before)]


@router.get("/threads/{thread_id}/history")
async def get_history(
    thread_id: str,
    threads: ThreadsDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    before: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    return [wire.state(s) for s in await threads.history(caller, thread_id, limit=limit, before=before)]


# -- runs --------------------------------------------------------------------------------------------------


class Started:
    """A run just started (its job made), before any byte of the answer: refusals are plain 4xx."""

    def __init__(self, job: Job, thread_id: str, modes: list[str]) -> None:
        self.job, self.thread_id, self.modes = job, thread_id, modes


async def _start(request: Request, response: Response, threads: ThreadsDep, caller: CallerDep) -> Started:
    thread_id: str | None = request.path_params.get("thread_id")
    q = await body(request, wire.RunCreate)
    if q.command is not None:
        raise AdgraphError("INVALID_INPUT", "adgraph's graphs have no interrupts to resume with a command")
    workflow = workflow_of_assistant(q.assistant_id)
    if thread_id is None:  # a run with no thread: on a new one of its own
        thread_id = (await threads.create(caller, metadata={"graph_id": workflow})).id
    job = await threads.start(
        caller,
        thread_id,
        workflow,
        input=q.input,
        checkpoint_id=q.fork_from(),
        multitask=q.multitask_strategy,
        if_not_exists=q.if_not_exists,
    )
    where = f"/threads/{thread_id}/runs/{job.id}"
    response.headers["Content-Location"] = where
    if request.url.path.endswith("/stream"):
        response.headers["Location"] = where + "/stream"
    elif request.url.path.endswith("/wait"):
        response.headers["Location"] = where + "/join"
    return Started(job, thread_id, q.modes())


StartedRun = Annotated[Started, Depends(_start)]


@router.post("/threads/{thread_id}/runs")
@router.post("/runs")
async def create_run(run: StartedRun) -> dict[str, Any]:
    return wire.run(run.job, run.thread_id)


@router.post("/threads/{thread_id}/runs/stream", response_class=EventSourceResponse, responses=SSE)
@router.post("/runs/stream", response_class=EventSourceResponse, responses=SSE)
async def stream_run(
    run: StartedRun, jobs: JobsDep, caller: CallerDep, _slot: StreamSlot, closed_after: ClosedAfter
) -> AsyncIterator[ServerSentEvent]:
    """The run's events as LangGraph stream parts: `metadata`, then per checkpoint `values` / `updates`
    / `debug`, adgraph's own events (progress, nodes started and finished) as `custom`, and `end` (after
    `error` if the job failed). Each part's id resumes the stream with `Last-Event-ID`."""
    async for ev in closed_after(_parts(jobs, caller, run.job, run.thread_id, run.modes, None)):
        yield ev


@router.post("/threads/{thread_id}/runs/wait")
@router.post("/runs/wait")
async def wait_run(run: StartedRun, jobs: JobsDep, caller: CallerDep) -> Any:
    """The run's final values once it ends (`{"__error__": …}` if it failed)."""
    return await _final(jobs, caller, run.job.id)


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str,
    threads: ThreadsDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> list[dict[str, Any]]:
    view_id = (await threads.get(caller, thread_id)).id
    return [
        wire.run(j, view_id)
        for j in await threads.runs(caller, view_id, status=status, limit=limit, offset=offset)
    ]


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(thread_id: str, run_id: str, threads: ThreadsDep, caller: CallerDep) -> dict[str, Any]:
    return wire.run(await threads.run(caller, thread_id, run_id), thread_id)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(
    thread_id: str,
    run_id: str,
    threads: ThreadsDep,
    jobs: JobsDep,
    caller: CallerDep,
    wait: Annotated[str | None, Query()] = None,
    action: Annotated[str, Query(pattern="^(interrupt|rollback)$")] = "interrupt",
) -> dict[str, Any]:
    """Cancel the run's job (a running one at its next node boundary; it stays resumable: `rollback` is
    taken as `interrupt`, nothing is deleted). `wait=1`: answer once it has stopped."""
    job = await threads.run(caller, thread_id, run_id)
    job = await jobs.cancel(caller, job.id)
    if wait in ("1", "true", "True"):
        async for _ in jobs.events(caller, job.id):
            pass
        job = await jobs.get(caller, job.id)
    return wire.run(job, thread_id)


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(thread_id: str, run_id: str, threads: ThreadsDep, jobs: JobsDep, caller: CallerDep) -> Any:
    job = await threads.run(caller, thread_id, run_id)
    return await _final(jobs, caller, job.id)


async def _joined(
    thread_id: str,
    run_id: str,
    threads: ThreadsDep,
    caller: CallerDep,
    stream_mode: Annotated[list[str] | None, Query()] = None,
) -> Started:
    return Started(await threads.run(caller, thread_id, run_id), thread_id, stream_mode or ["values"])


@router.get("/threads/{thread_id}/runs/{run_id}/stream", response_class=EventSourceResponse, responses=SSE)
async def join_stream(
    run: Annotated[Started, Depends(_joined)],
    jobs: JobsDep,
    caller: CallerDep,
    _slot: StreamSlot,
    closed_after: ClosedAfter,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> AsyncIterator[ServerSentEvent]:
    """The run's stream again: from the start, or after `Last-Event-ID` (an id this stream sent)."""
    m = _EVENT_ID.fullmatch(last_event_id or "")
    after = (int(m[1]), int(m[2])) if m else None
    async for ev in closed_after(_parts(jobs, caller, run.job, run.thread_id, run.modes, after)):
        yield ev


# -- streaming and waiting ---------------------------------------------------------------------------------


async def _parts(
    jobs: Jobs, caller: Caller, job: Job, thread_id: str, modes: list[str], after: tuple[int, int] | None
) -> AsyncGenerator[ServerSentEvent, None]:
    """The stream parts of the job's stored events: part k of event N has id "N-k"; `after` (N, k):
    only the parts after that one. (The job's events are read `aclosing`: closed with this stream.)"""
    if after is None:
        yield _sse("metadata", {"run_id": job.id, "attempt": 1}, None)
    previous: dict[str, Any] | None = None
    events = contextlib.aclosing(jobs.events(caller, job.id, after[0] - 1 if after else 0))
    async with events as stream:
        async for ev in stream:
            parts: list[tuple[str, Any]] = []
            if ev.type == "checkpoint":
                point = await jobs.checkpoint(caller, job.id, ev.data["id"])
                values = jsonable(point.values or {})
                if previous is None:
                    previous = await _parent_values(jobs, caller, job.id, point.info.parent_id)
                node = point.info.node
                for mode in modes if node != "__input__" else ():  # before the input is in: no state yet
                    if mode == "values":
                        parts.append(("values", values))
                    elif mode == "updates" and node in WORKFLOWS[job.workflow].nodes:
                        changed = {k: v for k, v in values.items() if previous.get(k) != v}
                        parts.append(("updates", {node: changed}))
                    elif mode == "debug":
                        from service.threads import ThreadState

                        payload = wire.state(ThreadState(thread_id, job, point))
                        parts.append(
                            ("debug", {"type": "checkpoint", "step": point.info.step, "payload": payload})
                        )
                previous = values
            elif ev.type == "job_finished" and ev.data.get("status") == "failed":
                err = ev.data.get("error") or {}
                parts.append(
                    ("error", {"error": err.get("code", "INTERNAL"), "message": err.get("message", "")})
                )
            elif "custom" in modes:
                parts.append(("custom", {"type": ev.type, **ev.data}))
            for k, (event, data) in enumerate(parts):
                if after is None or (ev.id, k) > after:
                    yield _sse(event, data, f"{ev.id}-{k}")
    yield _sse("end", None, None)


async def _parent_values(jobs: Jobs, caller: Caller, job_id: str, parent_id: str | None) -> dict[str, Any]:
    if parent_id is None:
        return {}
    try:
        return jsonable((await jobs.checkpoint(caller, job_id, parent_id)).values or {})
    except AdgraphError:
        return {}


def _sse(event: str, data: Any, event_id: str | None) -> ServerSentEvent:
    return ServerSentEvent(event=event, id=event_id, raw_data=json.dumps(data, ensure_ascii=False))


async def _final(jobs: Jobs, caller: Caller, job_id: str) -> Any:
    """Once the job ends: its newest values, or `{"__error__": …}` if it failed."""
    async for _ in jobs.events(caller, job_id):
        pass
    job = await jobs.get(caller, job_id)
    if job.status == "failed":
        err = job.error or {}
        return {"__error__": {"error": err.get("code", "INTERNAL"), "message": err.get("message", "")}}
    _, values = await jobs.final_state(caller, job_id)
    return jsonable(values)
