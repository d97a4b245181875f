"""What the MCP door costs over the REST door, on the same server, in one run.

1. A tool call against the same REST call: `check_generation_status(job_id)` over one Streamable HTTP
   session against `GET /v1/jobs/{id}` over one keep-alive connection, same key, same job; alternated in
   rounds so the machine's noise falls on both alike. Target: MCP median - REST median <= 10 ms.
   Two MCP clients: the SDK's 1.x `ClientSession` as it ships (it re-checks the tool's output schema
   against the JSON Schema metaschema on every call, ~8 ms of client CPU: python-sdk#3133), and the same
   session validating with a validator compiled once per tool, as the SDK's own client does since 2.x (and
   the TypeScript SDK of desktop clients, with ajv). The second is the door's own cost.
2. How late `wait_for_job` delivers a node's finish: for each `node_finished` of a real ad job, the time
   its progress notification reaches the client minus the `finished_at` the runner stamped just before
   storing the event; against the same measure on the REST door's SSE stream of another ad job (the
   baseline). Target: MCP median <= 100 ms.

The server (uvicorn, the real app with its in-process runner) runs in a thread of this process: the
client's own work shares the interpreter with it, as it would not on a real desktop.

    .venv/bin/python bench/mcp_overhead.py [--calls 300] [--rounds 5] [--jobs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from httpx_sse import aconnect_sse
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.accounts import Accounts  # noqa: E402
from service.app import create_app  # noqa: E402
from service.db import make_engine, migrate  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store import JobStore  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "photos" / "banana.png"


class CachingClientSession(ClientSession):
    """The 1.x client session, validating structured output with one compiled validator per tool (the 2.x
    SDK's behaviour) instead of a one-shot `jsonschema.validate` per call."""

    _validators: dict[str, Any]

    async def _validate_tool_result(self, name: str, result: Any) -> None:
        from jsonschema.validators import validator_for

        validators = self.__dict__.setdefault("_validators", {})
        if name not in validators:
            if name not in self._tool_output_schemas:
                await self.list_tools()
            schema = self._tool_output_schemas.get(name)
            if schema is None:
                validators[name] = None
            else:
                cls = validator_for(schema)
                cls.check_schema(schema)
                validators[name] = cls(schema)
        if (validator := validators[name]) is not None:
            validator.validate(result.structuredContent)


def start_server(settings: Settings) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if server.started and httpx.get(url + "/healthz").status_code == 200:
                return url, server, thread
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the server did not start")


async def make_key(settings: Settings) -> str:
    engine = make_engine(settings.database)
    store = JobStore(engine)
    await migrate(engine)
    key, _ = await Accounts(store, settings).create("bench", ["submit"], rate="100000000/minute")
    store.close()
    await engine.dispose()
    return key


async def run(calls: int, rounds: int, n_jobs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=None, checkpoint_url=None)
        key = await make_key(settings)
        url, server, thread = start_server(settings)
        auth = {"Authorization": f"Bearer {key}"}
        photo = "data:image/png;base64," + base64.b64encode(PHOTO.read_bytes()).decode()
        try:
            async with (
                httpx.AsyncClient(base_url=url, headers=auth, timeout=300) as rest,
                httpx.AsyncClient(headers=auth, timeout=httpx.Timeout(60, read=300)) as http,
                httpx.AsyncClient(headers=auth, timeout=httpx.Timeout(60, read=300)) as http2,
                streamable_http_client(url + "/mcp", http_client=http) as (read, write, _),
                ClientSession(read, write) as mcp,
                streamable_http_client(url + "/mcp", http_client=http2) as (read2, write2, _),
                CachingClientSession(read2, write2) as cached,
            ):
                await mcp.initialize()
                await cached.initialize()
                job = await mcp.call_tool("generate_ad_image", {"product_image": photo, "text_content": "x"})
                job_id = job.structuredContent["id"]
                await mcp.call_tool("wait_for_job", {"job_id": job_id, "timeout_s": 300})

                # 1. overhead per call
                rest_ms: list[float] = []
                mcp_ms: list[float] = []
                cached_ms: list[float] = []
                for _ in range(rounds):
                    for _ in range(calls):
                        t = time.perf_counter()
                        r = await rest.get(f"/v1/jobs/{job_id}")
                        rest_ms.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200
                    for session, times in ((mcp, mcp_ms), (cached, cached_ms)):
                        for _ in range(calls):
                            t = time.perf_counter()
                            res = await session.call_tool("check_generation_status", {"job_id": job_id})
                            times.append((time.perf_counter() - t) * 1000)
                            assert not res.isError and res.structuredContent["id"] == job_id
                r50, m50, c50 = (statistics.median(x) for x in (rest_ms, mcp_ms, cached_ms))
                print(f"1. one status read, {calls} x {rounds} rounds each (median, p90):")
                print(f"  REST GET /v1/jobs/ID                    {r50:.2f} ms  {_p90(rest_ms):.2f} ms")
                print(f"  MCP, SDK 1.x client as shipped          {m50:.2f} ms  {_p90(mcp_ms):.2f} ms")
                print(f"  MCP, client with a compiled validator   {c50:.2f} ms  {_p90(cached_ms):.2f} ms")
                print(f"  MCP overhead, client as shipped         {m50 - r50:.2f} ms")
                print(f"  MCP overhead, the door's own            {c50 - r50:.2f} ms   (target <= 10 ms)")

                # 2. delivery latency of node_finished
                mcp_late: list[float] = []
                sse_late: list[float] = []
                for _ in range(n_jobs):
                    mcp_late += await mcp_delivery(mcp, rest, photo)
                    sse_late += await sse_delivery(rest, photo)
                print(f"2. a node's finish, {len(mcp_late)} MCP / {len(sse_late)} SSE events (median, max):")
                sse50, mcp50 = statistics.median(sse_late), statistics.median(mcp_late)
                print(f"  REST SSE stream (baseline)         {sse50:.1f} ms  {max(sse_late):.1f} ms")
                print(f"  MCP wait_for_job notification      {mcp50:.1f} ms  {max(mcp_late):.1f} ms (<=100)")
        finally:
            server.should_exit = True
            thread.join(timeout=60)


async def mcp_delivery(mcp: ClientSession, rest: httpx.AsyncClient, photo: str) -> list[float]:
    made = await mcp.call_tool("generate_ad_image", {"product_image": photo, "text_content": "빠른 배송"})
    job_id = made.structuredContent["id"]
    received: dict[str, float] = {}

    async def progress(done: float, total: float | None, message: str | None) -> None:
        kind, _, node = (message or "").partition(" ")
        if kind == "node_finished":
            received[node] = time.time()

    await mcp.call_tool("wait_for_job", {"job_id": job_id, "timeout_s": 300}, progress_callback=progress)
    stamped = await finished_at(rest, job_id)
    return [(received[n] - stamped[n]) * 1000 for n in stamped if n in received]


async def sse_delivery(rest: httpx.AsyncClient, photo: str) -> list[float]:
    up = await rest.post("/v1/artifacts", files={"file": ("p.png", base64.b64decode(photo.split(",")[1]))})
    body = {"workflow": "ad", "input": {"product_image": up.json()["id"], "headline": "새 소식"}}
    job_id = (await rest.post("/v1/jobs", json=body)).json()["id"]
    late: list[float] = []
    async with aconnect_sse(rest, "GET", f"/v1/jobs/{job_id}/events") as source:
        async for ev in source.aiter_sse():
            if ev.event == "node_finished":
                late.append((time.time() - json.loads(ev.data)["finished_at"]) * 1000)
    return late


async def finished_at(rest: httpx.AsyncClient, job_id: str) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aconnect_sse(rest, "GET", f"/v1/jobs/{job_id}/events") as source:
        async for ev in source.aiter_sse():
            if ev.event == "node_finished":
                data = json.loads(ev.data)
                out[data["name"]] = data["finished_at"]
    return out


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1]


def main() -> None:
    import logging

    logging.getLogger("mcp.server.streamable_http").setLevel(logging.CRITICAL)  # the SDK on a client closing
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    asyncio.run(run(a.calls, a.rounds, a.jobs))


if __name__ == "__main__":
    main()
