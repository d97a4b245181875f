"""The FastAPI app. Its lifespan owns the database, checkpointer, Chromium and job runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from checkpoints.saver import open_checkpointer
from service.api import artifacts, errors, jobs, meta
from service.api.deps import Resources
from service.context import ad_context
from service.db import make_engine, migrate
from service.events import EventBus
from service.runner import JobRunner
from service.settings import Settings
from service.store import JobStore
from service.workflows import WORKFLOWS


def create_app(settings: Settings | None = None, *, context=ad_context) -> FastAPI:
    """`context(settings)` is an async context manager yielding the run context (tests wrap the real one)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine = make_engine(settings.database)
            stack.push_async_callback(engine.dispose)
            await migrate(engine)
            saver = await stack.enter_async_context(open_checkpointer(settings.checkpoints))
            ctx = await stack.enter_async_context(context(settings))
            graphs = {name: wf.build(saver) for name, wf in WORKFLOWS.items()}
            # The runner gets its own connections: its lease renewals and progress writes must not queue
            # behind a burst of API reads.
            runner_engine = make_engine(settings.database)
            stack.push_async_callback(runner_engine.dispose)
            store, bus = JobStore(engine), EventBus()
            runner = JobRunner(
                JobStore(runner_engine),
                WORKFLOWS,
                graphs,
                ctx,
                bus,
                concurrency=settings.max_concurrent_jobs,
                lease_s=settings.lease_s,
            )
            app.state.resources = Resources(
                settings=settings,
                store=store,
                artifacts=ctx.artifacts,
                graphs=graphs,
                runner=runner,
                bus=bus,
                ctx=ctx,
                metrics=meta.Metrics(),
            )
            await runner.start()
            stack.push_async_callback(runner.stop)
            yield

    app = FastAPI(
        title="adgraph",
        version="0.1.0",
        lifespan=lifespan,
        description="AI ad creatives as checkpointed LangGraph jobs.",
    )
    errors.install(app)
    for router in (artifacts.router, jobs.router, meta.router):
        app.include_router(router)
    app.add_middleware(artifacts.UploadLimit, limit=settings.max_upload_bytes)
    return app
