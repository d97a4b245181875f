"""`adgraph worker`: a process that runs queued jobs from the database until it is told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from service.jobs import open_service
from service.worker_stats import publish_stats

log = logging.getLogger("adgraph.worker")


async def run_worker(settings: Any) -> None:
    """`adgraph worker`: run queued jobs until SIGTERM/SIGINT, then stop at the next node boundary."""
    async with open_service(settings, evaluations=False, worker=True, idle_poll_s=0.2) as jobs:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker %s running up to %d jobs", jobs.runner.owner, settings.max_concurrent_jobs)
        publisher = asyncio.create_task(publish_stats(jobs.components.models, settings))  # for /v1/system
        try:
            await stop.wait()
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
