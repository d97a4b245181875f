"""In-process wake-ups for live SSE streams; the events themselves are read from the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Queue[Any]]] = defaultdict(set)

    def subscribe(self, job_id: str) -> asyncio.Queue[Any]:
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
        self._subs[job_id].add(q)
        return q

    def unsubscribe(self, job_id: str, q: asyncio.Queue[Any]) -> None:
        self._subs[job_id].discard(q)
        if not self._subs[job_id]:
            del self._subs[job_id]

    def publish(self, job_id: str, event: Any) -> None:
        """Tell the job's live streams that `event` (a stored JobEvent) is in the database."""
        for q in list(self._subs.get(job_id, ())):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled client catches up on reconnect
                q.put_nowait(event)
