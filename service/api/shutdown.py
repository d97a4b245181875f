"""SIGTERM for the API server, Kubernetes-style: readiness goes false first, then the server closes.

On the first SIGTERM (or Ctrl+C) the application layer drains (`Jobs.drain`): `/readyz` answers 503
`SHUTTING_DOWN` and every open event stream (REST SSE, the LangGraph API's streams, MCP's wait_for_job,
the web studio) ends after the events already stored, so clients reconnect with `Last-Event-ID` to a
server that stays. After ADGRAPH_SHUTDOWN_DELAY_S (time for a load balancer to see the 503) uvicorn
closes its listener and waits for the requests in flight (`timeout_graceful_shutdown`). A second
signal exits at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, delay_s: float = 0.0) -> None:
        super().__init__(config)
        self.delay_s = delay_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        jobs = find_jobs(self.config.loaded_app)
        if self._draining or self._loop is None or jobs is None:
            super().handle_exit(sig, frame)  # the second signal, or not started yet: uvicorn's own
            return
        self._draining = True
        self._loop.call_soon_threadsafe(jobs.drain)
        if self.delay_s > 0:
            loop, later = self._loop, self._close_later
            loop.call_soon_threadsafe(lambda: loop.call_later(self.delay_s, later, sig))
        else:
            super().handle_exit(sig, frame)

    def _close_later(self, sig: int) -> None:
        super().handle_exit(sig, None)


def find_jobs(app: Any) -> Any:
    """The `Jobs` of an app, through uvicorn's wrappers (the ASGI middlewares keep `.app`)."""
    while app is not None and not hasattr(getattr(app, "state", None), "jobs"):
        app = getattr(app, "app", None)
    return getattr(getattr(app, "state", None), "jobs", None)
