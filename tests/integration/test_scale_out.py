"""adgraph scaled out, as real processes: an API server only (`adgraph serve --workers 0`) and several
`adgraph worker`s, each with its own data directory as if on its own machine, sharing the local
PostgreSQL (jobs, checkpoints, procrastinate's queue) and a shared artifact store (PostgreSQL too).

What a user would notice: every job submitted finishes; a worker killed with SIGKILL in the middle of a
node loses only that node (another worker runs it and the rest); a worker sent SIGTERM finishes its node
and hands the job on; a PostgreSQL restart mid-run loses nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from graph.state import AD_NODES
from tests.integration import node_gate
from tests.integration.api_support import fresh_database, postgres_reachable
from tests.support import ADGRAPH, PHOTOS, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_reachable(), reason="needs PostgreSQL at 127.0.0.1:5432"),
]
HELD_AT = "analyze"  # node_gate holds the embedded analyzer: step 1 is checkpointed, step 2 has begun
BEFORE = list(AD_NODES[: AD_NODES.index(HELD_AT)])
FINISHED = ("succeeded", "failed", "cancelled")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The API process and the workers, with their logs; every process is stopped at the end."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp, self.url = tmp, url
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ,
            "ADGRAPH_DATABASE_URL": url,
            "ADGRAPH_ARTIFACTS_URL": url,  # the store every "machine" reaches
            "ADGRAPH_LEASE_S": "4",  # heartbeats every 0.8 s; a silent worker is seen after 4 s
            "ADGRAPH_MAX_CONCURRENT_JOBS": "1",
            "ADGRAPH_WORKER_GRACE_S": "30",
            "ADGRAPH_AUTH": "open",
        }

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        env = {**env, "ADGRAPH_DATA_DIR": str(self.tmp / name)}
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen([ADGRAPH, *args], env=env, stdout=log, stderr=log)
        self.procs[name] = proc
        return proc

    def api(self, **env: str) -> None:
        self._spawn("api", ["serve", "--workers", "0", "--port", str(self.port)], {**self.env, **env})

        def ready() -> bool:
            try:
                return httpx.get(self.base + "/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(ready, 60, interval=0.2, what="the API server to be ready")
        except AssertionError:
            raise AssertionError(self.log("api")) from None

    def worker(self, name: str, gate: Path | None = None) -> subprocess.Popen[bytes]:
        env = node_gate.environ(self.env, gate, self.tmp) if gate else self.env
        return self._spawn(name, ["worker"], env)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-4000:]

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)}" for n in self.procs)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def cluster(tmp: Path, **api_env: str) -> Iterator[tuple[Cluster, httpx.Client]]:
    with fresh_database() as url:
        c = Cluster(tmp, url)
        try:
            c.api(**api_env)
            with httpx.Client(base_url=c.base, timeout=15) as http:
                yield c, http
        finally:
            c.stop()


def submit(http: httpx.Client, photo: str, n: int, **extra: Any) -> list[str]:
    ids = []
    for i in range(n):
        body = {
            "workflow": "ad",
            "input": {"product_image": photo, "headline": f"바나나 {i}", "seed": i},
            **extra,
        }
        r = http.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def upload(http: httpx.Client) -> str:
    r = http.post("/v1/artifacts", files={"file": ("banana.png", (PHOTOS / "banana.png").read_bytes())})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def all_finished(http: httpx.Client, ids: list[str], timeout: float, c: Cluster) -> dict[str, dict]:
    def done() -> dict[str, dict] | None:
        jobs = {i: http.get(f"/v1/jobs/{i}").json() for i in ids}
        return jobs if all(j["status"] in FINISHED for j in jobs.values()) else None

    try:
        return wait_until(done, timeout, interval=0.25, what=f"all {len(ids)} jobs to finish")
    except AssertionError:
        raise AssertionError(c.logs()) from None


def runs(job: dict) -> list[tuple[str, str, int]]:
    return [(n["name"], n["status"], n["attempt"]) for n in job["nodes"]]


def ran_once(job: dict) -> bool:
    return runs(job) == [(n, "succeeded", 1) for n in AD_NODES]


def test_a_killed_worker_loses_only_its_node_and_every_job_finishes(tmp_path: Path) -> None:
    with cluster(tmp_path) as (c, http):
        gate = tmp_path / "gate"
        held_worker = c.worker("worker-a", gate)  # the first worker: it takes a job and is held in analyze
        photo = upload(http)
        ids = submit(http, photo, 20)
        wait_until(lambda: node_gate.entered(gate), 90, what="worker-a held in analyze")
        held = [j for j in (http.get(f"/v1/jobs/{i}").json() for i in ids) if j["status"] == "running"]
        assert len(held) == 1, held
        held_id = held[0]["id"]
        for name in ("worker-b", "worker-c"):  # two more machines
            c.worker(name)
        # the others run while worker-a is held; then worker-a dies mid-node
        wait_until(
            lambda: sum(http.get(f"/v1/jobs/{i}").json()["status"] == "succeeded" for i in ids) >= 3,
            120,
            what="the other workers to finish some jobs",
        )
        held_worker.send_signal(signal.SIGKILL)
        held_worker.wait(timeout=10)
        killed_at = time.time()

        jobs = all_finished(http, ids, 300, c)
        assert [j["status"] for j in jobs.values()] == ["succeeded"] * 20, c.logs()
        assert http.get("/v1/jobs?limit=100").json()["jobs"].__len__() == 20  # nothing lost, nothing extra
        job = jobs[held_id]
        # what had finished before the kill did not run again; the held node and the rest ran once more
        assert runs(job) == [
            *((n, "succeeded", 1) for n in BEFORE),
            (HELD_AT, "interrupted", 1),
            *((n, "succeeded", 2) for n in AD_NODES[AD_NODES.index(HELD_AT) :]),
        ]
        assert [e["outcome"] for e in job["attempt_log"]] == ["lost", "succeeded"]
        assert all(ran_once(j) for i, j in jobs.items() if i != held_id)
        # how long the job waited after its worker died: the lease (4 s) at most, plus a reaper round
        again = dt.datetime.fromisoformat(job["attempt_log"][1]["started_at"]).timestamp()
        assert 0 < again - killed_at < 4 + 5, again - killed_at


def test_a_worker_sent_sigterm_finishes_its_node_and_hands_the_job_on(tmp_path: Path) -> None:
    with cluster(tmp_path) as (c, http):
        gate = tmp_path / "gate"
        leaving = c.worker("worker-a", gate)
        photo = upload(http)
        [first] = submit(http, photo, 1)
        wait_until(lambda: node_gate.entered(gate), 90, what="worker-a held in analyze")
        c.worker("worker-b")
        leaving.send_signal(signal.SIGTERM)
        node_gate.release(gate)  # the node in progress finishes; the worker stops at the boundary after it
        t0 = time.monotonic()
        assert leaving.wait(timeout=30) == 0, c.log("worker-a")
        assert time.monotonic() - t0 < 30  # within its grace period
        job = all_finished(http, [first], 120, c)[first]
        assert job["status"] == "succeeded", c.logs()
        assert (
            runs(job)
            == [
                *((n, "succeeded", 1) for n in [*BEFORE, HELD_AT]),  # analyze was allowed to finish
                *((n, "succeeded", 2) for n in AD_NODES[AD_NODES.index(HELD_AT) + 1 :]),
            ]
        )
        assert [(e["outcome"], e.get("reason")) for e in job["attempt_log"]] == [
            ("requeued", "shutdown"),
            ("succeeded", None),
        ]


def test_a_priority_job_overtakes_a_queue_across_workers(tmp_path: Path) -> None:
    with cluster(tmp_path) as (c, http):
        photo = upload(http)
        ordinary = submit(http, photo, 6)
        [urgent] = submit(http, photo, 1, priority=9)
        c.worker("worker-a")  # no worker until everything is queued: the queue's order decides
        jobs = all_finished(http, [*ordinary, urgent], 240, c)
        started = sorted(jobs.values(), key=lambda j: j["attempt_log"][-1]["started_at"])
        assert started[0]["id"] == urgent
        assert [j["id"] for j in started[1:]] == ordinary


def test_postgresql_restarted_mid_run_loses_no_job(tmp_path: Path) -> None:
    with cluster(tmp_path) as (c, http):
        photo = upload(http)
        ids = submit(http, photo, 8)
        for name in ("worker-a", "worker-b"):
            c.worker(name)
        wait_until(
            lambda: sum(http.get(f"/v1/jobs/{i}").json()["status"] == "succeeded" for i in ids) >= 2,
            120,
            what="two jobs to finish",
        )
        restart = subprocess.run(
            ["service", "postgresql", "restart"], capture_output=True, text=True, timeout=120
        )
        assert restart.returncode == 0, restart.stderr
        assert postgres_reachable()

        def answering() -> bool:
            try:
                return http.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answering, 60, interval=0.2, what="the API to reconnect")
        jobs = all_finished(http, ids, 300, c)
        unfinished = [(j["error"], j["attempt_log"]) for j in jobs.values() if j["status"] != "succeeded"]
        assert not unfinished, unfinished
        # at most the node the restart caught ran again (its checkpoint could not be written); every node
        # whose checkpoint was stored before it did not
        for j in jobs.values():
            finished = [n["name"] for n in j["nodes"] if n["status"] == "succeeded"]
            assert list(dict.fromkeys(finished)) == list(AD_NODES), j["nodes"]
            assert len(finished) - len(AD_NODES) <= 1, j["nodes"]
        assert all(p.poll() is None for p in c.procs.values()), c.logs()  # every process lived through it


def test_an_api_server_sent_sigterm_turns_unready_ends_its_streams_and_exits(tmp_path: Path) -> None:
    with cluster(tmp_path, ADGRAPH_SHUTDOWN_DELAY_S="3") as (c, http):
        gate = tmp_path / "gate"
        c.worker("worker-a", gate)
        photo = upload(http)
        [job] = submit(http, photo, 1)
        wait_until(lambda: node_gate.entered(gate), 90, what="the job held in analyze")
        seen: list[str] = []
        with http.stream("GET", f"/v1/jobs/{job}/events", timeout=30) as r:
            from tests.integration.api_support import sse_events

            events = sse_events(r)
            for ev in events:  # the stored events so far, up to the held node
                seen.append(ev["event"])
                if ev["event"] == "node_started" and ev["data"]["node"] == HELD_AT:
                    break
            api = c.procs["api"]
            t0 = time.monotonic()
            api.send_signal(signal.SIGTERM)
            rest = [ev["event"] for ev in events]  # the stream ends although the job has not
            ended_after = time.monotonic() - t0
        assert "job_finished" not in seen + rest and ended_after < 2.5, (ended_after, rest)
        ready = http.get("/readyz")  # still listening during the delay, but out of the load balancer
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "SHUTTING_DOWN"
        node_gate.release(gate)
        # uvicorn re-raises the signal it handled once it has shut down: "killed by SIGTERM", gracefully
        assert api.wait(timeout=20) in (0, -signal.SIGTERM), c.log("api")
        assert 2.5 < time.monotonic() - t0 < 15  # the delay, then a prompt exit: no stream held it up
        assert "Waiting for connections to close" not in c.log("api")
