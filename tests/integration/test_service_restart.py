"""`kill -9` the server mid-job, start it again: every job finishes, finished nodes don't run again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from graph.state import AD_NODES
from tests.conftest import PHOTOS
from tests.integration.conftest import ADGRAPH

pytestmark = pytest.mark.integration
STEP1 = {"segment", "background", "composite"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stream(http: httpx.Client, job_id: str) -> list[tuple[str, str]]:
    """Follow GET /v1/jobs/{id}/events to the job's end: (event, node name or final status) each."""
    out: list[tuple[str, str]] = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=120) as r:
        assert r.status_code == 200
        kind = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind in ("node_finished", "job_finished"):
                data = json.loads(line[5:])
                out.append((kind, data.get("name") or data.get("status")))
                if kind == "job_finished":
                    return out
    return out


def _start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([ADGRAPH, "serve", "--port", str(port)], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(log.read_text()[-3000:])


def test_a_killed_server_finishes_every_job_from_its_checkpoints(tmp_path: Path) -> None:
    env = {**os.environ, "ADGRAPH_DATA_DIR": str(tmp_path / "data"), "ADGRAPH_MAX_CONCURRENT_JOBS": "1"}
    port, log = _free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    server = _start(env, port, log)
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            banana = (PHOTOS / "banana.png").read_bytes()
            photo = http.post("/v1/artifacts", files={"file": ("banana.png", banana)})
            assert photo.status_code == 201, photo.text
            ids = []
            for i in range(3):
                r = http.post(
                    "/v1/jobs",
                    json={
                        "workflow": "ad",
                        "input": {"product_image": photo.json()["id"], "headline": f"바나나 {i}", "seed": i},
                    },
                )
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            # kill it once the first job is past step 1 but not finished
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                job = http.get(f"/v1/jobs/{ids[0]}").json()
                done = {n["name"] for n in job["nodes"] if n["status"] == "succeeded"}
                if done.issuperset(STEP1) and job["status"] == "running":
                    break
                assert job["status"] in ("queued", "running"), job
                time.sleep(0.02)
            else:
                raise AssertionError(f"job never got past step 1: {job}")
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        killed_at = done

        server = _start(env, port, log)
        with httpx.Client(base_url=base, timeout=10) as http:
            # the jobs run in a worker process (and its Chromium) that yields the CPU to the API
            workers = [p for p in psutil.Process(server.pid).children() if "worker" in p.cmdline()]
            assert len(workers) == 1 and workers[0].nice() == 19
            assert workers[0].environ()["ADGRAPH_GPU_PROCESSES"] == "1"  # one worker: the whole device
            # the last job runs in the new worker process; its event stream, opened now, follows it live
            # (the API process learns of a worker's events from the database) to its end
            streamed = _stream(http, ids[2])
            assert streamed[-1] == ("job_finished", "succeeded"), streamed
            assert [n for kind, n in streamed if kind == "node_finished"] == list(AD_NODES), streamed
            deadline = time.monotonic() + 90
            jobs = {}
            while time.monotonic() < deadline:
                jobs = {i: http.get(f"/v1/jobs/{i}").json() for i in ids}
                if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs.values()):
                    break
                time.sleep(0.2)
            assert [j["status"] for j in jobs.values()] == ["succeeded"] * 3, jobs
            assert len(http.get("/v1/jobs").json()["jobs"]) == 3  # nothing submitted was lost
            first = jobs[ids[0]]
            runs: dict[str, list[int]] = {}
            for n in first["nodes"]:
                if n["status"] == "succeeded":
                    runs.setdefault(n["name"], []).append(n["attempt"])
            # every node succeeded exactly once; the ones done before the kill were not run again
            assert sorted(runs) == sorted(AD_NODES)
            assert all(len(a) == 1 for a in runs.values()), runs
            assert all(runs[n] == [1] for n in killed_at), (killed_at, runs)
            assert runs["render"] == [2]
            ad = http.get(first["result"]["ad"]["url"])
            assert ad.status_code == 200 and ad.headers["content-type"] == "image/png"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
