"""adgraph's LangGraph API (/lg) against `langgraph dev` serving the same graph, in one run.

Both servers run in their own processes on loopback ports and serve the graphs of `bench/trivial_graph.py`
(nodes that do nothing: what is measured is the server); the client is the real `langgraph_sdk`, calling
`runs.wait` on a thread made beforehand, the two servers alternated run by run so the machine's noise
falls on both alike. Per-node overhead = (8-node median - 1-node median) / 7.

- `langgraph dev`: langgraph-api's in-memory runtime (what Studio users run), no durability settings.
- adgraph: `adgraph serve`'s app with the SQLite default: every run is a job row, each node a checkpoint
  written before the next node starts (durability "sync"), each event stored, then the run's values read
  back from the checkpoint.

Also the real ad workflow on adgraph's /lg (embedded defaults) for scale; `langgraph dev` cannot run it
(its runtime builds the run context from the schema, and adgraph's nodes need their backends).

    .venv/bin/python bench/lg_api.py [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from langgraph_sdk import get_client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHOTO = ROOT / "tests" / "data" / "photos" / "banana.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_adgraph(port: int, data_dir: str) -> None:
    """The child process: adgraph's app with the two trivial workflows added to its registry."""
    import uvicorn

    from bench import trivial_graph
    from service.app import create_app
    from service.settings import Settings
    from service.wiring import open_components
    from service.workflows import WORKFLOWS

    for n in (1, 8):
        wf = trivial_graph.workflow(n)
        WORKFLOWS[wf.name] = wf

    @asynccontextmanager
    async def components(settings: Any, **kw: Any) -> Any:
        async with open_components(settings, **kw) as parts:
            parts.contexts = {**parts.contexts, "trivial1": None, "trivial8": None}
            yield parts

    settings = Settings(data_dir=Path(data_dir), database_url=None, checkpoint_url=None)
    app = create_app(settings, components=components)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def wait_ok(url: str, proc: subprocess.Popen[bytes], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server at {url} exited with {proc.returncode}")
            try:
                if (await http.get(url + "/ok")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"no answer from {url}")


async def timed_waits(url: str, graph: str, runs: int, inp: dict[str, Any]) -> list[float]:
    """runs.wait on a new thread: the time to its values."""
    out: list[float] = []
    async with get_client(url=url, timeout=300) as lg:
        for _ in range(runs):
            thread = await lg.threads.create()
            t = time.perf_counter()
            values = await lg.runs.wait(thread["thread_id"], graph, input=inp)
            out.append((time.perf_counter() - t) * 1000)
            assert "__error__" not in values, values
    return out


async def timed_streams(url: str, graph: str, runs: int, inp: dict[str, Any]) -> list[float]:
    """runs.stream (stream_mode "updates") on a new thread: the time to its `end` event."""
    out: list[float] = []
    async with get_client(url=url, timeout=300) as lg:
        for _ in range(runs):
            thread = await lg.threads.create()
            t = time.perf_counter()
            parts = lg.runs.stream(thread["thread_id"], graph, input=inp, stream_mode="updates")
            events = [p.event async for p in parts]
            out.append((time.perf_counter() - t) * 1000)
            assert "error" not in events, events
    return out


def start_servers(tmp: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], int, int, Any]:
    """(adgraph's process, langgraph dev's, their ports, the log file both write to)."""
    ad_port, dev_port = free_port(), free_port()
    graphs = str(ROOT / "bench" / "trivial_graph.py")
    config = tmp / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "dependencies": [str(ROOT)],
                "graphs": {"trivial1": graphs + ":one", "trivial8": graphs + ":eight"},
            }
        )
    )
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT)}
    langgraph = str(Path(sys.executable).with_name("langgraph"))
    dev_cmd = [
        langgraph,
        "dev",
        "--config",
        str(config),
        "--port",
        str(dev_port),
        "--no-browser",
        "--no-reload",
    ]
    ad_cmd = [sys.executable, __file__, "--serve", str(ad_port), str(tmp / "adgraph")]
    log = open(tmp / "servers.log", "wb")  # noqa: SIM115 - closed with the servers
    dev = subprocess.Popen(dev_cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    ad = subprocess.Popen(ad_cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return ad, dev, ad_port, dev_port, log


SERVERS = ("adgraph /lg", "langgraph dev")
CALLS = {"wait": timed_waits, "stream": timed_streams}


async def run(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ad, dev, ad_port, dev_port, log = start_servers(Path(tmp))
        urls = dict(
            zip(SERVERS, (f"http://127.0.0.1:{ad_port}/lg", f"http://127.0.0.1:{dev_port}"), strict=True)
        )
        try:
            await wait_ok(urls[SERVERS[0]], ad)
            await wait_ok(urls[SERVERS[1]], dev)
            for graph in ("trivial1", "trivial8"):  # warm both
                for url in urls.values():
                    await timed_waits(url, graph, 3, {"n": 0})
            results: dict[tuple[str, str, str], list[float]] = {}
            for _ in range(runs):
                for graph in ("trivial1", "trivial8"):
                    for name, url in urls.items():
                        for call, timed in CALLS.items():
                            results.setdefault((call, name, graph), []).extend(
                                await timed(url, graph, 1, {"n": 0})
                            )
            for call in CALLS:
                print(f"runs.{call}, {runs} runs each, servers alternated (median, p90):")
                for name in SERVERS:
                    one, eight = results[(call, name, "trivial1")], results[(call, name, "trivial8")]
                    per_node = (statistics.median(eight) - statistics.median(one)) / 7
                    print(
                        f"  {name:14s} 1 node {statistics.median(one):7.1f} ms ({_p90(one):.1f})"
                        f"   8 nodes {statistics.median(eight):7.1f} ms ({_p90(eight):.1f})"
                        f"   per node {per_node:5.1f} ms"
                    )
            # the real ad workflow on adgraph, warm
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ad_port}") as rest:
                up = await rest.post("/v1/artifacts", files={"file": ("p.png", PHOTO.read_bytes())})
                photo = up.json()["id"]
            n = max(3, runs // 8)
            ad_ms = await timed_waits(
                urls[SERVERS[0]], "ad", n + 1, {"product_image": photo, "headline": "빠른 배송"}
            )
            ad_ms = ad_ms[1:]  # the first loads what the later ones reuse
            print(
                f"ad workflow on adgraph /lg, runs.wait, {n} runs: median {statistics.median(ad_ms):.0f} ms"
            )
        finally:
            for p in (ad, dev):
                p.terminate()
            for p in (ad, dev):
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1] if len(xs) >= 2 else xs[0]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve_adgraph(int(sys.argv[2]), sys.argv[3])
        return
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=40)
    a = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    asyncio.run(run(a.runs))


if __name__ == "__main__":
    main()
