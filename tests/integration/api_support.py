"""A live adgraph server for the API tests: the real app under uvicorn in a thread, over loopback.

Everything is real (database, runner, u2netp, Chromium) except two knobs the tests turn on the run
context: the renderer can be told to fail its next N renders with RENDER_FAILED, and the backdrop can be
held (a job then waits inside its `background` node until the test lets it go), so a test can act on a
job that is certainly running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from httpx_sse import EventSource
from psycopg import sql

from kernel.errors import AdgraphError
from service.api.http_safety import uvicorn_options
from service.app import create_app
from service.settings import Settings
from service.wiring import open_components

TERMINAL = ("succeeded", "failed", "cancelled")
AD_NODES = ["segment", "background", "composite", "analyze", "plan", "design", "code", "render"]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Gate:
    """Holds every caller of `wait` while closed; `entered` tells the test one is waiting."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self.entered = threading.Event()

    def close(self) -> None:
        self.entered.clear()
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        if not self._open.is_set():
            self.entered.set()
            await asyncio.to_thread(self._open.wait, 60)

    @contextmanager
    def closed(self) -> Iterator[Gate]:
        """Closed for the block; always opened again, so a failed test never strands the server."""
        self.close()
        try:
            yield self
        finally:
            self.open()


class HeldBackdrop:
    """The real backdrop, behind a gate."""

    def __init__(self, inner: Any, gate: Gate) -> None:
        self.inner, self.gate = inner, gate
        self.name = inner.name

    async def generate(self, **kw: Any) -> Any:
        await self.gate.wait()
        return await self.inner.generate(**kw)


class FlakyRenderer:
    """The real Chromium renderer, except that the next `fail(n)` renders raise RENDER_FAILED."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._failures = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # the site methods (homepage workflow) go straight through
        return getattr(self.inner, name)

    def fail(self, n: int) -> None:
        with self._lock:
            self._failures = n

    async def render_layer(self, html: str, size: tuple[int, int]) -> Any:
        with self._lock:
            fail, self._failures = self._failures > 0, max(0, self._failures - 1)
        if fail:
            raise AdgraphError("RENDER_FAILED", "injected: the renderer crashed")
        return await self.inner.render_layer(html, size)


@dataclasses.dataclass
class Faults:
    gate: Gate = dataclasses.field(default_factory=Gate)
    renderer: FlakyRenderer | None = None

    def context(self) -> Callable[..., Any]:
        """A `create_app(components=...)` opener: the real components with the two knobs (a gate on the
        ad's backdrop, a renderer that can be made to fail) in both workflows' contexts."""

        @asynccontextmanager
        async def components(settings: Settings, **kw: Any) -> AsyncIterator[Any]:
            async with open_components(settings, **kw) as parts:
                if parts.contexts:
                    self.renderer = FlakyRenderer(parts.renderer)
                    ad, site = parts.contexts["ad"], parts.contexts["homepage"]
                    parts.contexts = {
                        "ad": dataclasses.replace(
                            ad, renderer=self.renderer, backdrop=HeldBackdrop(ad.backdrop, self.gate)
                        ),
                        "homepage": dataclasses.replace(site, renderer=self.renderer),
                    }
                yield parts

        return components


class LiveServer:
    """`create_app(settings)` under uvicorn in a background thread, on a socket bound before it starts."""

    def __init__(self, settings: Settings, faults: Faults) -> None:
        self.settings, self.faults = settings, faults
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings, components=faults.context())
        # the timeouts and limits `adgraph serve` runs with (service/api/http_safety.py)
        options = uvicorn_options(settings)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, name="adgraph-server", daemon=True
        )

    def start(self, timeout: float = 90) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread died while starting (see the log above)")
            if self.server.started:
                try:
                    if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not start in time")

    def stop(self) -> None:
        self.faults.gate.open()
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self._sock.close()
        assert not self.thread.is_alive(), "the server did not stop"


# -- the CLI ---------------------------------------------------------------------------------------------


def adgraph(*args: str, data_dir: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The `adgraph` command over `data_dir`'s SQLite (an ADGRAPH_DATABASE_URL around is ignored)."""
    from tests.support import ADGRAPH

    env = {**os.environ, "ADGRAPH_DATA_DIR": str(data_dir)}
    env.pop("ADGRAPH_DATABASE_URL", None)
    return subprocess.run([ADGRAPH, *args], env=env, capture_output=True, text=True, timeout=timeout)


def make_key(data_dir: Path, tenant: str, *extra: str) -> str:
    """A key from the CLI, as an administrator makes one (the server reads it from the same database)."""
    made = adgraph("keys", "create", "--tenant", tenant, *extra, data_dir=data_dir)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["key"]


# -- PostgreSQL ------------------------------------------------------------------------------------------


def postgres_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this run, dropped afterwards; yields its URL."""
    name = f"adgraph_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- client helpers --------------------------------------------------------------------------------------


def wait_for(
    http: httpx.Client, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 90
) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
        time.sleep(0.05)


def error_of(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the one error shape, with that HTTP status and code and the request's id; return the error."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details", "request_id"}, body
    # the request's id, as echoed in its header: what a user quotes when reporting the error
    assert body["error"]["request_id"] and body["error"]["request_id"] == r.headers["x-request-id"], body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """A text/event-stream response's events as {id, event, data} dicts (httpx-sse parses the stream)."""
    for sse in EventSource(response).iter_sse():
        yield {"id": int(sse.id), "event": sse.event, "data": sse.json()}


def raw_get(port: int, target: str) -> bytes:
    """GET `target` exactly as written (no client-side path normalisation); the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def count_jobs(http: httpx.Client) -> int:
    return sum(http.get("/v1/system").json()["jobs"].values())
