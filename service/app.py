"""The FastAPI app. Its lifespan opens the job service (database, checkpoints, Chromium, models, runner)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from service import lg, mcp, observability, web
from service.api import artifacts, batches, errors, evaluations, http_safety, jobs, meta
from service.jobs import open_service
from service.settings import Settings


def create_app(settings: Settings | None = None, *, components: Any = None, run_jobs: bool = True) -> FastAPI:
    """With `run_jobs` the app runs jobs itself (one process: tests, embedded use); without, worker processes
    (`adgraph worker`, started by `adgraph serve`) run them and the app only serves HTTP.
    `components`: in place of `service.wiring.open_components` (tests wrap the real one)."""
    settings = settings or Settings()
    # MCP at /mcp (service/mcp): built per app, since its session manager runs once; entered by the lifespan
    mcp_app, mcp_sessions = mcp.http_door(settings, lambda: app.state.jobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_service(settings, run_jobs=run_jobs, worker=run_jobs, components=components) as service,
            mcp_sessions.run(),
        ):
            app.state.jobs = service
            app.state.metrics = meta.Metrics()
            yield

    app = FastAPI(
        title="adgraph",
        version="0.1.0",
        lifespan=lifespan,
        description="AI ad creatives and small-business homepages as checkpointed LangGraph jobs.",
        # one URL per resource: /v1/jobs/ is 404, not a redirect built from the request's Host header
        redirect_slashes=False,
    )
    errors.install(app)
    for router in (
        artifacts.router,
        jobs.router,
        batches.router,
        meta.router,
        evaluations.router,
        lg.router,
        web.router,
    ):
        app.include_router(router)
    # POST /mcp itself, not a mount (a mount 307s /mcp to /mcp/, and answers unknown paths in plain text)
    app.router.routes.append(Route(mcp.PATH, mcp_app))
    app.add_middleware(
        artifacts.UploadLimit,
        limit=settings.max_upload_bytes,
        json_limits={mcp.PATH: mcp.body_limit(settings)},  # a photo as base64 in a tool call
    )
    # request ids around everything, a span per request when tracing is on: before http_safety, whose
    # wrapper of the stack would hide Starlette's own from OpenTelemetry's (it wraps that one, or nothing)
    observability.instrument(app)
    http_safety.install(app, settings)  # security headers, trusted hosts, CORS, body timeout
    return app
