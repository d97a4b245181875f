"""What routes depend on, as narrow `Annotated` dependencies."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.background import BackgroundTask

from service.accounts import Caller
from service.db import Job
from service.jobs import Jobs
from service.observability import tenant_var
from service.settings import Settings
from service.wiring import Components


def _jobs(request: Request) -> Jobs:
    return request.app.state.jobs


JobsDep = Annotated[Jobs, Depends(_jobs)]


def _components(request: Request) -> Components:
    return request.app.state.jobs.components


ComponentsDep = Annotated[Components, Depends(_components)]


def _settings(request: Request) -> Settings:
    return request.app.state.jobs.settings


SettingsDep = Annotated[Settings, Depends(_settings)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `adgraph keys create`")
_api_key = APIKeyHeader(
    name="x-api-key", auto_error=False, description="The same key (langgraph_sdk sends it)"
)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: `Authorization: Bearer KEY`, else `x-api-key: KEY` (never a cookie)."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key") or None


CALLER = "adgraph.caller"
"""Where a middleware that authenticated the request before its body was read (`UploadLimit`) leaves the
caller in the ASGI scope's state, so it is authenticated (and rate-counted) once."""


async def _caller(
    request: Request,
    jobs: JobsDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],  # in the OpenAPI schema
    _api_key: Annotated[str | None, Depends(_api_key)],
) -> Caller:
    """The caller a request acts as, from `Authorization: Bearer KEY` or `x-api-key: KEY` (never a cookie)."""
    caller = request.scope.get("state", {}).get(CALLER)
    if caller is None:
        caller = await jobs.authenticate(presented_key(request.headers))
    tenant_var.set(caller.tenant)  # on every log line of the request from here on
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]


async def _job(job_id: str, jobs: JobsDep, caller: CallerDep) -> Job:
    return await jobs.get(caller, job_id)


ExistingJob = Annotated[Job, Depends(_job)]


async def _stream_slot(jobs: JobsDep, caller: CallerDep) -> AsyncIterator[None]:
    with jobs.stream_slot(caller):  # released once the response, the whole stream, has been sent
        yield


StreamSlot = Annotated[None, Depends(_stream_slot)]
"""One of the caller's key's event streams (RATE_LIMITED past ADGRAPH_MAX_STREAMS_PER_KEY), taken
before the stream starts."""

Closer = Callable[[AsyncGenerator[Any, None]], AsyncGenerator[Any, None]]


async def _stream_closer() -> AsyncIterator[Closer]:
    streams: list[AsyncGenerator[Any, None]] = []

    def closed_after(stream: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        streams.append(stream)
        return stream

    try:
        yield closed_after
    finally:
        for stream in reversed(streams):
            await stream.aclose()


ClosedAfter = Annotated[Closer, Depends(_stream_closer)]
"""Wraps the generator an SSE route streams from, so that it is closed (its `finally` run: the job's
subscription let go) once the response ends. FastAPI's SSE producer is cancelled while it waits to send
when the client has gone, and `async for` does not close the generator it was reading then: left to the
garbage collector, a dropped stream would hold its subscription for as long as that takes."""
"""The job named in the path, if the caller may see it (JOB_NOT_FOUND before a response starts: streams
need it checked first)."""


async def zip_response(
    write: Callable[[Path], Awaitable[Any]], filename: Callable[[Any], str]
) -> FileResponse:
    """A ZIP built by `write(path)` in a temporary file, sent as an attachment named `filename(what write
    returned)`, and removed once sent (or at once if building it failed)."""
    fd, name = tempfile.mkstemp(suffix=".zip", prefix="adgraph-")
    os.close(fd)
    path = Path(name)
    try:
        made = await write(path)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type="application/zip",
        filename=filename(made),
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
