"""Wake-ups for live SSE streams; the events themselves are read from the database.

A stream subscribes to its job on the `EventBus` and re-reads the job's events when woken. Events written
in this process (the in-process runner, a cancel) wake their streams at once. Events written by worker
processes are found by one `EventTail` per API process: a single query per tick for all open streams,
instead of every stream polling the table on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

log = logging.getLogger("adgraph.events")


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.changed = asyncio.Event()
        """Set whenever a stream subscribes (the tail sleeps while there is none)."""
        self.closed = False

    def subscribe(self, job_id: str) -> asyncio.Event:
        wake = asyncio.Event()
        self._subs[job_id].add(wake)
        self.changed.set()
        return wake

    def unsubscribe(self, job_id: str, wake: asyncio.Event) -> None:
        self._subs[job_id].discard(wake)
        if not self._subs[job_id]:
            del self._subs[job_id]

    def jobs(self) -> list[str]:
        """The jobs that have a live stream."""
        return list(self._subs)

    def close(self) -> None:
        """The server is shutting down: every live stream ends (its client reconnects, with
        Last-Event-ID, to a server that is not), and no new one waits."""
        self.closed = True
        for wakes in list(self._subs.values()):
            for wake in wakes:
                wake.set()

    def publish(self, job_id: str) -> None:
        """Tell the job's live streams that it has a new event in the database."""
        for wake in self._subs.get(job_id, ()):
            wake.set()


class EventTail:
    """Every `interval` s, one read of the newest event id of each job with a live stream; a job whose id
    moved wakes its streams. Per-job ids are compared, not one global high-water mark: on PostgreSQL ids
    are taken before commit, so another job's event may become visible after a higher id."""

    def __init__(
        self,
        bus: EventBus,
        latest_ids: Callable[[list[str]], Awaitable[dict[str, int]]],
        interval: float = 0.02,
    ) -> None:
        self.bus, self.latest_ids, self.interval = bus, latest_ids, interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        seen: dict[str, int] = {}
        while True:
            jobs = self.bus.jobs()
            if not jobs:
                seen.clear()
                self.bus.changed.clear()
                await self.bus.changed.wait()
                continue
            try:
                latest = await self.latest_ids(jobs)
            except Exception:  # the database may be busy or restarting; streams fall back to their own look
                log.exception("reading the newest events failed")
                latest = {}
            for job_id, last in latest.items():
                if seen.get(job_id) != last:
                    seen[job_id] = last
                    self.bus.publish(job_id)
            for job_id in seen.keys() - set(jobs):
                del seen[job_id]
            await asyncio.sleep(self.interval)
