"""The FastAPI app. Its lifespan owns the database, checkpointer, Chromium and job runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from checkpoints.saver import open_checkpointer
from service.api import artifacts, errors, evaluations, jobs, meta
from service.api.deps import Resources
from service.context import ad_context, chat_of, make_ad_context, make_models, make_renderer
from service.db import make_engine, migrate
from service.events import EventBus, EventTail
from service.runner import JobRunner, RemoteRunner
from service.settings import Settings
from service.site_context import make_homepage_context
from service.store import JobStore
from service.workflows import WORKFLOWS


def create_app(
    settings: Settings | None = None,
    *,
    context=ad_context,
    homepage_context=make_homepage_context,
    run_jobs: bool = True,
) -> FastAPI:
    """`context(settings)` is an async context manager yielding the ad's run context (tests wrap the real
    one); `homepage_context(settings, renderer)` builds the homepage's around the same Chromium.

    With `run_jobs` the app runs jobs itself (one process: tests, embedded use); without, worker processes
    (`adgraph worker`, started by `adgraph serve`) run them and the app only serves HTTP.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine = make_engine(settings.database)
            stack.push_async_callback(engine.dispose)
            await migrate(engine)
            saver = await stack.enter_async_context(open_checkpointer(settings.checkpoints))
            if run_jobs:
                ctx = await stack.enter_async_context(context(settings))
            else:  # the API needs the artifact store, fonts and CLIP (for evaluations), not the job models
                models = make_models(settings, for_jobs=False)
                stack.push_async_callback(models.close)
                ctx = make_ad_context(settings, make_renderer(settings), models)
            graphs = {name: wf.build(saver) for name, wf in WORKFLOWS.items()}
            contexts = {"ad": ctx, "homepage": homepage_context(settings, ctx.renderer, chat=chat_of(ctx))}
            store, bus = JobStore(engine), EventBus()
            stack.callback(store.close)
            # Wakes the event streams for events written elsewhere (worker processes, a runner's claim).
            tail = EventTail(bus, store.latest_event_ids)
            tail.start()
            stack.push_async_callback(tail.stop)
            if run_jobs:
                # The runner gets its own connections: its lease renewals and progress writes must not
                # queue behind a burst of API reads.
                runner_engine = make_engine(settings.database)
                stack.push_async_callback(runner_engine.dispose)
                runner_store = JobStore(runner_engine)
                stack.callback(runner_store.close)
                runner = JobRunner(
                    runner_store,
                    WORKFLOWS,
                    graphs,
                    ctx,
                    bus,
                    concurrency=settings.max_concurrent_jobs,
                    lease_s=settings.lease_s,
                    contexts=contexts,
                )
            else:
                runner = RemoteRunner(store, bus)
            app.state.resources = Resources(
                settings=settings,
                store=store,
                artifacts=ctx.artifacts,
                graphs=graphs,
                runner=runner,
                bus=bus,
                ctx=ctx,
                metrics=meta.Metrics(),
                contexts=contexts,
            )
            if run_jobs:
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
    for router in (artifacts.router, jobs.router, meta.router, evaluations.router):
        app.include_router(router)
    app.add_middleware(artifacts.UploadLimit, limit=settings.max_upload_bytes)
    return app
