"""Load benchmark of the REST job service (`adgraph serve`), end to end over loopback.

Starts the real server as a subprocess (SQLite, a temporary ADGRAPH_DATA_DIR), or uses `--url`; uploads
scikit-image's `coffee` photo; runs one ad job to warm up (u2netp, Chromium); then measures:

1. polling: `--clients` clients, each its own httpx.AsyncClient with one keep-alive connection, GET
   /v1/jobs/{id} of the newest jobs (ids refreshed from GET /v1/jobs every 0.5 s) for `--poll-seconds`:
   1a back to back (closed loop) while ad jobs run, 1b each client every `--poll-interval` s while ad
   jobs run, 1c the same with no job running. A feeder keeps `max_concurrent_jobs` jobs running and one
   queued. The pollers run in a child process, so their CPU does not delay this process's event streams.
   Reports requests, p50/p95/p99/max latency, errors, CPU of the server and of the clients, and the
   `node_finished` SSE delay of the feeder's jobs meanwhile.
2. SSE delay: `--sse-jobs` fresh jobs, each followed on GET /v1/jobs/{id}/events from its submission; per
   `node_finished` event, delay = receive time (time.time()) - the event's `finished_at` (server wall
   clock, same machine). Events that happened before the stream opened are replayed, not counted.
3. submission: `--submissions` POST /v1/jobs, `--submit-concurrency` at a time: accepted per second; then
   every accepted id is looked for in GET /v1/jobs (paged) and GET /v1/system's counts, and, when this
   script started the server, read back from its jobs.db by another SQLite connection. The runner starts
   on them meanwhile; a server this script started is just stopped, one given by `--url` gets them
   cancelled (POST /v1/jobs/{id}/cancel).

Targets: poll p99 <= 25 ms with 0 errors, >= 300 submissions/s, SSE delay <= 50 ms. The last line is
`poll_p99_ms=.. poll_errors=.. poll_paced_p99_ms=.. poll_idle_p99_ms=.. submit_per_s=..
sse_median_ms=.. sse_max_ms=..` (poll_p99_ms: 1a, the closed loop).

    .venv/bin/python bench/api_load.py [--quick] [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from httpx_sse import EventSource

ROOT = Path(__file__).resolve().parents[1]
ADGRAPH = ROOT / ".venv" / "bin" / "adgraph"
POLL_P99_MS, SUBMIT_PER_S, SSE_MS = 25.0, 300.0, 50.0
NAN = float("nan")


# -- helpers -----------------------------------------------------------------------------------------


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..1; nan for no data."""
    if not xs:
        return NAN
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(q * len(xs) + 0.999999) - 1))]


def dist(xs: list[float]) -> str:
    if not xs:
        return "no data"
    return (
        f"p50 {pct(xs, 0.5):.1f} ms  p95 {pct(xs, 0.95):.1f} ms  p99 {pct(xs, 0.99):.1f} ms  "
        f"max {max(xs):.1f} ms"
    )


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {platform.machine()} {model}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; Python {platform.python_version()}, "
        f"httpx {httpx.__version__}; load average {load}"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def coffee_png() -> bytes:
    import skimage.data
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buf, format="PNG")
    return buf.getvalue()


_TLS: list[ssl.SSLContext] = []
KEY: dict[str, str] = {}
"""With --keys: the tenant key every client sends (Authorization header), and the admin key for /v1/system."""
ADMIN: dict[str, str] = {}


def client(url: str, connections: int, timeout: float) -> httpx.AsyncClient:
    """An AsyncClient over `connections` keep-alive connections. One TLS context is shared (plain HTTP
    needs none, but httpx builds one per client by default: ~65 ms each)."""
    if not _TLS:
        _TLS.append(ssl.create_default_context())
    n = connections
    return httpx.AsyncClient(
        base_url=url,
        headers=KEY,
        timeout=timeout,
        verify=_TLS[0],
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=60),
    )


class CpuMeter:
    """Cores kept busy over a phase: the server (alone, and with its children: Chromium) and this process."""

    def __init__(self, server_pid: int | None) -> None:
        self.server = psutil.Process(server_pid) if server_pid else None
        self.me = psutil.Process()

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            return t.user + t.system
        return 0.0

    def _server(self) -> tuple[float, float]:
        if self.server is None:
            return NAN, NAN
        main = self._cpu(self.server)
        return main, main + sum(self._cpu(c) for c in self.server.children(recursive=True))

    def __enter__(self) -> CpuMeter:
        self.t0, self.s0, self.c0 = time.perf_counter(), self._server(), self._cpu(self.me)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        s1 = self._server()
        self.server_main = (s1[0] - self.s0[0]) / self.wall
        self.server_all = (s1[1] - self.s0[1]) / self.wall
        self.bench = (self._cpu(self.me) - self.c0) / self.wall

    def line(self, pollers_cpu_s: float | None = None) -> str:
        server = "n/a (not found)"
        if self.server is not None:
            server = f"{self.server_main:.2f} (with Chromium {self.server_all:.2f})"
        out = f"CPU, cores busy: server {server}, bench process {self.bench:.2f}"
        if pollers_cpu_s is not None:
            out += f", pollers' process {pollers_cpu_s / self.wall:.2f}"
        return out


# -- the server --------------------------------------------------------------------------------------


class Server:
    """`adgraph serve` in a subprocess over a temporary data dir; stopped (TERM, then KILL) by stop()."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="adgraph-bench-")
        self.data_dir = Path(self.tmp.name) / "data"
        self.log_path = Path(self.tmp.name) / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 90.0) -> float:
        t0 = time.perf_counter()
        env = {**os.environ, "ADGRAPH_DATA_DIR": str(self.data_dir)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(ADGRAPH), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: Chromium goes with it on a hard kill
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - t0
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer /healthz in {within:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        finally:
            self.tmp.cleanup()

    def count_in_db(self, ids: list[str]) -> int:
        """How many of `ids` another SQLite connection finds committed in the server's jobs.db."""
        db = sqlite3.connect(f"file:{self.data_dir / 'jobs.db'}?mode=ro", uri=True, timeout=15)
        try:
            db.execute("CREATE TEMP TABLE want (id TEXT PRIMARY KEY)")
            db.executemany("INSERT INTO want VALUES (?)", [(i,) for i in ids])
            return db.execute("SELECT count(*) FROM jobs JOIN want USING (id)").fetchone()[0]
        finally:
            db.close()


# -- the API, as a client ----------------------------------------------------------------------------


def job_body(photo_id: str, seed: int) -> dict[str, Any]:
    return {
        "workflow": "ad",
        "input": {
            "product_image": photo_id,
            "headline": "갓 볶은 원두, 오늘의 커피",
            "subline": "매일 아침 직접 로스팅합니다",
            "cta": "지금 주문하기",
            "background_prompt": "warm beige linen table, soft morning light",
            "seed": seed,
        },
    }


async def submit(client: httpx.AsyncClient, photo_id: str, seed: int) -> str:
    r = await client.post("/v1/jobs", json=job_body(photo_id, seed))
    if r.status_code != 202:
        raise RuntimeError(f"POST /v1/jobs answered {r.status_code}: {r.text[:500]}")
    return r.json()["id"]


@dataclass
class SseStats:
    delays_ms: list[float] = field(default_factory=list)
    by_node: dict[str, list[float]] = field(default_factory=dict)
    replayed: int = 0
    """node_finished events that happened before the stream was open (replayed from the database)."""
    errors: int = 0


async def follow(
    client: httpx.AsyncClient,
    job_id: str,
    stats: SseStats,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> str | None:
    """Follow a job's event stream to its end, timing each `node_finished`; the job's final status."""
    try:
        async with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(120)) as r:
            if r.status_code != 200:
                stats.errors += 1
                return None
            opened = time.time()
            async for sse in EventSource(r).aiter_sse():
                received = time.time()
                kind, data = sse.event, sse.json()
                if on_event is not None:
                    on_event(kind, data)
                if kind == "node_finished":
                    if data["finished_at"] < opened:
                        stats.replayed += 1
                    else:
                        ms = (received - data["finished_at"]) * 1000
                        stats.delays_ms.append(ms)
                        stats.by_node.setdefault(data["name"], []).append(ms)
                elif kind == "job_finished":
                    return data["status"]
    except httpx.HTTPError:
        stats.errors += 1
    return None


async def cancel_all(client: httpx.AsyncClient, ids: list[str], concurrency: int = 16) -> dict[int, int]:
    """POST cancel for each id (409 for one already finished); status code -> count."""
    codes: dict[int, int] = {}
    todo = iter(ids)

    async def worker() -> None:
        for job_id in todo:
            try:
                code = (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code
            except httpx.HTTPError:
                code = -1
            codes[code] = codes.get(code, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return codes


async def wait_idle(client: httpx.AsyncClient, within: float = 30.0) -> None:
    """Until the server runs no job (a cancelled one stops at its next node boundary)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        system = (await client.get("/v1/system", headers=ADMIN)).json()
        if system["jobs"]["running"] == 0:
            return
        await asyncio.sleep(0.1)


@dataclass
class Feeder:
    """Keeps `running_target` jobs running and one more queued, each followed on its event stream."""

    client: httpx.AsyncClient
    photo_id: str
    running_target: int
    sse: SseStats = field(default_factory=SseStats)
    ids: list[str] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    samples: list[int] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: bool = False
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)

    def _on_event(self, job_id: str) -> Callable[[str, dict[str, Any]], None]:
        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "job_running":
                self.running.add(job_id)
                self.started.set()
            elif kind in ("job_finished", "job_requeued"):
                self.running.discard(job_id)
                self.active.discard(job_id)
                self._changed.set()

        return on_event

    async def _feed(self) -> None:
        seeds = itertools.count(1000)
        while not self._stop:
            while len(self.active) <= self.running_target and not self._stop:
                job_id = await submit(self.client, self.photo_id, next(seeds))
                self.ids.append(job_id)
                self.active.add(job_id)
                task = asyncio.create_task(follow(self.client, job_id, self.sse, self._on_event(job_id)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=0.5)

    async def _sample(self) -> None:
        while not self._stop:
            self.samples.append(len(self.running))
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        self._loops = [asyncio.create_task(self._feed()), asyncio.create_task(self._sample())]
        await asyncio.wait_for(self.started.wait(), timeout=60)

    async def stop(self) -> None:
        self._stop = True
        self._changed.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await cancel_all(self.client, [j for j in self.ids if j in self.active])
        await wait_idle(self.client)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def describe(self) -> str:
        busy = sum(1 for s in self.samples if s > 0) / max(1, len(self.samples))
        mean = statistics.fmean(self.samples) if self.samples else 0.0
        return (
            f"{len(self.ids)} jobs fed, >= 1 running {busy:.0%} of the window, {mean:.2f} running on average"
        )


# -- 1. the pollers (in a child process) -------------------------------------------------------------


async def poll_load(url: str, clients: int, seconds: float, interval: float, max_each: int) -> dict[str, Any]:
    """`clients` clients, each its own AsyncClient with one keep-alive connection (one pool over 100
    connections costs httpx O(connections) per request), GET /v1/jobs/{id} of a random one of the
    newest jobs: back to back (`interval` 0) or each every `interval` s from a random phase."""
    out: dict[str, Any] = {"latencies_ms": [], "errors": 0, "statuses": {}}
    ids: list[str] = []
    stop = asyncio.Event()

    async def refresh(http: httpx.AsyncClient) -> None:  # the running and recent jobs
        while True:
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                jobs = (await http.get("/v1/jobs", params={"limit": 8})).json()["jobs"]
                ids[:] = [j["id"] for j in jobs] or ids
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
                return

    async with contextlib.AsyncExitStack() as stack:
        side = await stack.enter_async_context(client(url, 1, 30))
        https = [await stack.enter_async_context(client(url, 1, 10)) for _ in range(clients)]
        refresher = asyncio.create_task(refresh(side))
        deadline = time.monotonic() + 30
        while not ids:  # noqa: ASYNC110 - the first refresh
            if time.monotonic() > deadline:
                raise RuntimeError("GET /v1/jobs listed no job to poll")
            await asyncio.sleep(0.05)
        await asyncio.gather(*(h.get("/healthz") for h in https))  # connected before the clock starts
        t0 = time.perf_counter()
        end = t0 + seconds

        async def poller(k: int, http: httpx.AsyncClient) -> None:
            rnd = random.Random(k)
            due = t0 + rnd.uniform(0, interval)
            for _ in range(max_each):
                if interval:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due += interval
                if time.perf_counter() >= end:
                    return
                job_id = rnd.choice(ids)
                t = time.perf_counter()
                try:
                    r = await http.get(f"/v1/jobs/{job_id}")
                    ms = (time.perf_counter() - t) * 1000
                except httpx.HTTPError:
                    out["errors"] += 1
                    continue
                if r.status_code != 200:
                    out["errors"] += 1
                    continue
                out["latencies_ms"].append(ms)
                status = r.json()["status"]
                out["statuses"][status] = out["statuses"].get(status, 0) + 1

        await asyncio.gather(*(poller(k, h) for k, h in enumerate(https)))
        out["wall_s"] = time.perf_counter() - t0
        stop.set()
        await refresher
    return out


def pollers_process(
    url: str, clients: int, seconds: float, interval: float, max_each: int, key: dict[str, str]
) -> dict[str, Any]:
    KEY.update(key)  # a spawned process: the key comes with the call
    c0 = time.process_time()
    out = asyncio.run(poll_load(url, clients, seconds, interval, max_each))
    out["cpu_s"] = time.process_time() - c0
    return out


def ready() -> bool:
    return True


# -- 3. submissions ----------------------------------------------------------------------------------


async def submit_burst(url: str, photo_id: str, count: int, concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {"accepted": [], "latencies_ms": [], "errors": {}}
    async with contextlib.AsyncExitStack() as stack:
        https = [await stack.enter_async_context(client(url, 1, 30)) for _ in range(concurrency)]
        await asyncio.gather(*(h.get("/healthz") for h in https))
        todo = iter(range(count))
        t0 = time.perf_counter()

        async def worker(http: httpx.AsyncClient) -> None:
            for i in todo:
                t = time.perf_counter()
                try:
                    r = await http.post("/v1/jobs", json=job_body(photo_id, i))
                except httpx.HTTPError as e:
                    key = type(e).__name__
                else:
                    if r.status_code == 202:
                        out["latencies_ms"].append((time.perf_counter() - t) * 1000)
                        out["accepted"].append(r.json()["id"])
                        continue
                    key = f"HTTP {r.status_code}"
                out["errors"][key] = out["errors"].get(key, 0) + 1

        await asyncio.gather(*(worker(h) for h in https))
        out["wall_s"] = time.perf_counter() - t0
    return out


async def listed(client: httpx.AsyncClient, want: set[str]) -> int:
    """How many of `want` GET /v1/jobs lists (newest first, paged by cursor)."""
    seen: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/jobs", params=params)).raise_for_status().json()
        seen.update(j["id"] for j in page["jobs"])
        cursor = page["next_cursor"]
        if not cursor or want <= seen:
            return len(want & seen)


# -- the benchmark -----------------------------------------------------------------------------------


@dataclass
class Bench:
    url: str
    args: argparse.Namespace
    server: Server | None
    http: httpx.AsyncClient
    pool: ProcessPoolExecutor
    photo_id: str = ""
    workers: int = 2
    out: dict[str, float] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        if self.server and self.server.proc:
            return self.server.proc.pid
        port = httpx.URL(self.url).port
        with contextlib.suppress(psutil.Error, OSError):  # --url: the process listening on its port
            for c in psutil.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                    return c.pid
        return None

    async def setup(self) -> None:
        photo = coffee_png()
        r = await self.http.post("/v1/artifacts", files={"file": ("coffee.png", photo, "image/png")})
        r.raise_for_status()
        self.photo_id = r.json()["id"]
        system = (await self.http.get("/v1/system", headers=ADMIN)).json()
        self.workers = system["max_concurrent_jobs"]
        print(
            f"server: {self.url}, database {system['database']}, max_concurrent_jobs {self.workers}; "
            f"uploaded coffee.png ({len(photo)} bytes) as {self.photo_id[:12]}…"
        )
        t0 = time.perf_counter()
        status = await follow(self.http, await submit(self.http, self.photo_id, 1), SseStats())
        print(f"warm-up ad job: {status} in {time.perf_counter() - t0:.2f} s")
        await asyncio.get_running_loop().run_in_executor(self.pool, ready)  # the pollers' process is up

    async def poll(self, key: str, label: str, interval: float, with_jobs: bool) -> None:
        a = self.args
        how = f"each every {interval:g} s" if interval else "back to back (closed loop)"
        load = "while ad jobs run" if with_jobs else "no job running"
        print(
            f"\n{label}. polling GET /v1/jobs/{{id}}: {a.clients} clients {how}, {a.poll_seconds:g} s, {load}"
        )
        feeder = Feeder(self.http, self.photo_id, self.workers)
        if with_jobs:
            await feeder.start()
        else:
            await wait_idle(self.http)
        loop = asyncio.get_running_loop()
        with CpuMeter(self.pid) as cpu:
            res = await loop.run_in_executor(
                self.pool, pollers_process, self.url, a.clients, a.poll_seconds, interval, a.max_polls, KEY
            )
        if with_jobs:
            await feeder.stop()
        lat, errors = res["latencies_ms"], res["errors"]
        n = len(lat) + errors
        p99 = pct(lat, 0.99)
        print(f"  {n} requests in {res['wall_s']:.1f} s = {n / res['wall_s']:.0f}/s, errors {errors}")
        print(f"  latency {dist(lat)}")
        print(f"  target p99 <= {POLL_P99_MS:g} ms, 0 errors: {verdict(p99 <= POLL_P99_MS and not errors)}")
        if not interval and n:  # no pause between requests: the wait is set by throughput
            little = a.clients / (n / res["wall_s"]) * 1000
            print(
                f"  closed loop: by Little's law {a.clients} clients at {n / res['wall_s']:.0f} req/s wait "
                f"{little:.0f} ms on average whatever one request costs; the paced clients (1b) are what a "
                "status poller does"
            )
        if with_jobs:
            print(f"  {feeder.describe()}; job states seen {res['statuses']}")
        print(f"  {cpu.line(res['cpu_s'])}")
        if sse := feeder.sse.delays_ms:
            print(f"  SSE node_finished delay of the fed jobs meanwhile ({len(sse)} events): {dist(sse)}")
        self.out[f"{key}_p99_ms"], self.out[f"{key}_errors"] = p99, errors

    async def sse(self) -> None:
        n = self.args.sse_jobs
        print(f"\n2. SSE node_finished delay: {n} fresh job(s), each followed from its submission")
        stats = SseStats()

        async def one(seed: int) -> str | None:
            return await follow(self.http, await submit(self.http, self.photo_id, seed), stats)

        await wait_idle(self.http)
        with CpuMeter(self.pid) as cpu:
            statuses = await asyncio.wait_for(asyncio.gather(*(one(2000 + i) for i in range(n))), 300)
        ds = stats.delays_ms
        med, mx = (statistics.median(ds), max(ds)) if ds else (NAN, NAN)
        print(
            f"  jobs {statuses}; {len(ds)} events timed (replayed, not timed: {stats.replayed}; "
            f"stream errors: {stats.errors})"
        )
        print(f"  delay median {med:.1f} ms, {dist(ds)}")
        print(f"  target <= {SSE_MS:g} ms: median {verdict(med <= SSE_MS)}, max {verdict(mx <= SSE_MS)}")
        per_node = (f"{k} {statistics.median(v):.0f}/{max(v):.0f}" for k, v in stats.by_node.items())
        print("  per node, median/max ms: " + ", ".join(per_node))
        print(f"  {cpu.line()}")
        self.out["sse_median_ms"], self.out["sse_max_ms"] = med, mx

    async def submissions(self) -> None:
        a = self.args
        print(
            f"\n3. submission: {a.submissions} x POST /v1/jobs, {a.submit_concurrency} at a time "
            f"(the runner starts on them meanwhile)"
        )
        before = (await self.http.get("/v1/system", headers=ADMIN)).json()["jobs"]
        with CpuMeter(self.pid) as cpu:
            res = await submit_burst(self.url, self.photo_id, a.submissions, a.submit_concurrency)
        accepted = res["accepted"]
        rate = len(accepted) / res["wall_s"]
        errors = res["errors"] or 0
        print(
            f"  {len(accepted)} accepted in {res['wall_s']:.2f} s = {rate:.0f}/s, errors {errors}; "
            f"target >= {SUBMIT_PER_S:g}/s: {verdict(rate >= SUBMIT_PER_S)}"
        )
        print(f"  POST latency {dist(res['latencies_ms'])}")
        print(f"  {cpu.line()}")
        after = (await self.http.get("/v1/system", headers=ADMIN)).json()["jobs"]
        t0 = time.perf_counter()
        found = await listed(self.http, set(accepted))
        checks = [
            f"GET /v1/system jobs +{sum(after.values()) - sum(before.values())}",
            f"GET /v1/jobs lists {found}/{len(accepted)} (paged in {time.perf_counter() - t0:.2f} s)",
        ]
        if self.server is not None:
            checks.append(
                f"read back from jobs.db by another connection: {self.server.count_in_db(accepted)}"
            )
        print("  stored: " + "; ".join(checks))
        if self.server is None:  # someone else's server: don't leave it 1500 ad jobs
            t0 = time.perf_counter()
            codes = await cancel_all(self.http, accepted, concurrency=a.submit_concurrency)
            print(f"  cancelled: {codes} in {time.perf_counter() - t0:.1f} s")
        self.out["submit_per_s"] = rate


async def run(url: str, args: argparse.Namespace, server: Server | None) -> dict[str, float]:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        async with client(url, 64, 30) as http:
            b = Bench(url, args, server, http, pool)
            phases: list[tuple[str, Callable[[], Any]]] = [
                ("setup", b.setup),
                ("1a", lambda: b.poll("poll", "1a", 0.0, with_jobs=True)),
                ("1b", lambda: b.poll("poll_paced", "1b", args.poll_interval, with_jobs=True)),
                ("1c", lambda: b.poll("poll_idle", "1c", args.poll_interval, with_jobs=False)),
                ("2", b.sse),
                ("3", b.submissions),
            ]
            spent = []
            for name, phase in phases:
                t0 = time.perf_counter()
                await phase()
                spent.append(f"{name} {time.perf_counter() - t0:.1f} s")
            print(f"\nphases: {', '.join(spent)}")
            return b.out


def make_keys(data_dir: Path) -> None:
    """A tenant key (no rate limit to speak of) and an admin key, made by `adgraph keys create`."""
    env = {**os.environ, "ADGRAPH_DATA_DIR": str(data_dir)}
    for target, args in ((KEY, ["--scope", "submit,read"]), (ADMIN, ["--scope", "admin"])):
        made = subprocess.run(
            [str(ADGRAPH), "keys", "create", "--tenant", "bench", "--rate", "10000000/minute", *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        target["Authorization"] = f"Bearer {json.loads(made.stdout)['key']}"
    print("auth on: every request sends a tenant key (admin key for /v1/system)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer submissions (< 60 s)")
    parser.add_argument("--url", help="a running server (loopback) instead of starting one")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--poll-seconds", type=float, help="each polling window (default 20, quick 5)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="paced clients: s between polls")
    parser.add_argument("--max-polls", type=int, default=100_000, help="most requests per polling client")
    parser.add_argument("--submissions", type=int, help="POST /v1/jobs count (default 1500, quick 300)")
    parser.add_argument("--submit-concurrency", type=int, default=32)
    parser.add_argument("--sse-jobs", type=int, help="fresh jobs followed for SSE delay (default 6, quick 2)")
    parser.add_argument(
        "--keys",
        action="store_true",
        help="make API keys first (a tenant key for all traffic, an admin key for /v1/system): auth on",
    )
    args = parser.parse_args()
    args.poll_seconds = args.poll_seconds or (5.0 if args.quick else 20.0)
    args.submissions = args.submissions or (300 if args.quick else 1500)
    args.sse_jobs = args.sse_jobs or (2 if args.quick else 6)
    if args.url and not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error("--url: loopback only, http://127.0.0.1:PORT")

    print(machine())
    t_start = time.perf_counter()
    server = None
    try:
        if args.url:
            url = args.url.rstrip("/")
        else:
            server = Server()
            if args.keys:
                make_keys(server.data_dir)
            print(f"starting adgraph serve on 127.0.0.1:{server.port}, data in {server.data_dir}")
            print(f"server answers /healthz after {server.start():.1f} s")
            url = server.url
        out = asyncio.run(run(url, args, server))
    except BaseException:
        if server is not None and server.proc is not None:
            print(f"--- server log (tail) ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if server is not None:
            t0 = time.perf_counter()
            server.stop()
            print(f"\nserver stopped in {time.perf_counter() - t0:.1f} s")
    print(f"total {time.perf_counter() - t_start:.1f} s; {machine().split('; ')[-1]}")
    print(
        f"poll_p99_ms={out['poll_p99_ms']:.1f} poll_errors={out['poll_errors']} "
        f"poll_paced_p99_ms={out['poll_paced_p99_ms']:.1f} poll_idle_p99_ms={out['poll_idle_p99_ms']:.1f} "
        f"submit_per_s={out['submit_per_s']:.0f} sse_median_ms={out['sse_median_ms']:.1f} "
        f"sse_max_ms={out['sse_max_ms']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
