"""`adgraph worker`: a process that runs queued jobs until it is told to stop.

SIGTERM (or SIGINT) stops it gracefully: it takes no more work, asks its running jobs to stop at their next
node boundary (a diffusion at its next step), gives them ADGRAPH_WORKER_GRACE_S, and puts every job it did
not finish back in the queue, resumable from its last checkpoint, before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

from service.jobs import open_service
from service.worker_stats import publish_stats

log = logging.getLogger("adgraph.worker")


async def run_worker(
    settings: Any, *, queues: Sequence[str] | None = None, stop: asyncio.Event | None = None
) -> None:
    """`adgraph worker`: run queued jobs (of `queues`, or all) until SIGTERM/SIGINT or `stop` is set."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread: `stop` only
            loop.add_signal_handler(sig, stop.set)
    async with open_service(settings, evaluations=False, worker=True, idle_poll_s=0.2, queues=queues) as jobs:
        runner: Any = jobs.runner
        log.info(
            "worker %s running up to %d jobs from %s (%s queue)",
            runner.owner,
            settings.max_concurrent_jobs,
            ", ".join(queues) if queues else "every queue",
            runner.queue.engine,
        )
        publisher = asyncio.create_task(publish_stats(jobs.components.models, settings))  # for /v1/system
        try:
            await stop.wait()
            log.info(
                "worker %s stopping: %d jobs running, grace %.0f s",
                runner.owner,
                runner.running,
                settings.worker_grace_s,
            )
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
