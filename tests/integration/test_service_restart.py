"""`kill -9` the server while a job is held inside a known node, start it again: every job finishes, and of
the held job only that node and the ones after it run again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from graph.state import AD_NODES
from tests.integration import node_gate
from tests.integration.api_support import sse_events
from tests.support import ADGRAPH, PHOTOS, wait_until

pytestmark = pytest.mark.integration
HELD_AT = "analyze"  # the first node of step 2: the gate is on the embedded analyzer
BEFORE = list(AD_NODES[: AD_NODES.index(HELD_AT)])
AGAIN = list(AD_NODES[AD_NODES.index(HELD_AT) :])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stream(http: httpx.Client, job_id: str) -> list[tuple[str, str]]:
    """Follow GET /v1/jobs/{id}/events to the job's end: (event, node name or final status) each."""
    out: list[tuple[str, str]] = []
    with http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=120) as r:
        assert r.status_code == 200
        for ev in sse_events(r):
            if ev["event"] in ("node_finished", "job_finished"):
                out.append((ev["event"], ev["data"].get("name") or ev["data"].get("status")))
                if ev["event"] == "job_finished":
                    return out
    return out


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([ADGRAPH, "serve", "--port", str(port)], env=env, stdout=out, stderr=out)
    try:
        wait_until(lambda: _ready(port), 60, interval=0.2, what="the server to be ready")
    except AssertionError:
        proc.kill()
        raise AssertionError(log.read_text()[-3000:]) from None
    return proc


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _runs(job: dict) -> list[tuple[str, str, int]]:
    return [(n["name"], n["status"], n["attempt"]) for n in job["nodes"]]


def test_a_killed_server_finishes_every_job_from_its_checkpoints(tmp_path: Path) -> None:
    env = {**os.environ, "ADGRAPH_DATA_DIR": str(tmp_path / "data"), "ADGRAPH_MAX_CONCURRENT_JOBS": "1"}
    gate = tmp_path / "gate"
    port, log = _free_port(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    server = _start(node_gate.environ(env, gate, tmp_path), port, log)
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
            # the first job is held inside `analyze`: step 1 is checkpointed, step 2 has begun
            try:
                held_pid = wait_until(lambda: node_gate.entered(gate), 90, what=f"a job held in {HELD_AT}")
            except AssertionError:
                raise AssertionError(log.read_text()[-3000:]) from None

            def holding() -> dict | None:
                job = http.get(f"/v1/jobs/{ids[0]}").json()
                return job if job["nodes"] and job["nodes"][-1]["name"] == HELD_AT else None

            job = wait_until(holding, 30, what=f"the job's row to show {HELD_AT} running")
            assert job["status"] == "running"
            assert _runs(job) == [*((n, "succeeded", 1) for n in BEFORE), (HELD_AT, "running", 1)]
            assert [http.get(f"/v1/jobs/{i}").json()["status"] for i in ids[1:]] == ["queued", "queued"]
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        # the worker holding the job dies with the server (PR_SET_PDEATHSIG), still inside the node
        wait_until(lambda: _dead(held_pid), 30, what=f"the held worker {held_pid} to die")

        server = _start(env, port, log)  # no gate this time
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

            def finished() -> dict[str, dict] | None:
                jobs = {i: http.get(f"/v1/jobs/{i}").json() for i in ids}
                done = all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs.values())
                return jobs if done else None

            jobs = wait_until(finished, 90, interval=0.2, what="every job to finish")
            assert [j["status"] for j in jobs.values()] == ["succeeded"] * 3, jobs
            assert len(http.get("/v1/jobs").json()["jobs"]) == 3  # nothing submitted was lost
            first = jobs[ids[0]]
            # the nodes finished before the kill did not run again; the held one and the rest ran once more
            assert _runs(first) == [
                *((n, "succeeded", 1) for n in BEFORE),
                (HELD_AT, "interrupted", 1),
                *((n, "succeeded", 2) for n in AGAIN),
            ]
            for other in ids[1:]:
                assert [(n, s) for n, s, _ in _runs(jobs[other])] == [(n, "succeeded") for n in AD_NODES]
            ad = http.get(first["result"]["ad"]["url"])
            assert ad.status_code == 200 and ad.headers["content-type"] == "image/png"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
