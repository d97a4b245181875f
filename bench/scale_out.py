"""The job queue scaled out: queue overhead per job, throughput with 1, 2 and 4 worker processes, and the
time from a worker's death to its job running elsewhere. Real processes, the local PostgreSQL.

Workers are `adgraph worker` (`service.worker.run_worker`) in child processes of this script, each with
its own data directory, with the graphs of `bench/trivial_graph.py` registered (nodes that do nothing, so
what is measured is the queue and the runner, not the models). This process submits through the
application layer (`Jobs.submit`), as the API does. Times are read from the rows and events the workers
store (database clock), not from when this process notices.

- overhead: one job at a time on an idle worker; created → job_started (pickup) and → job_finished
  (everything: claim, run, checkpoints, events, finish) for the 1-node graph. procrastinate on PostgreSQL
  against the local queue on SQLite (the embedded default), in the same run.
- throughput: 120 jobs of the 8-node graph submitted at once to 1, 2 and 4 workers (procrastinate).
- death: a worker holding a job (its node sleeps) is SIGKILLed — on this machine its process id is seen
  gone at once — and, as a machine that stops answering would be, SIGSTOPped: then only its silence
  (lease, heartbeats: ADGRAPH_LEASE_S) tells. The time until the job's next attempt starts elsewhere.

    .venv/bin/python bench/scale_out.py [--jobs 120]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HOLD = "BENCH_HOLD"

from tests.integration.api_support import fresh_database  # noqa: E402 - a database per measure, dropped after


def register() -> None:
    """The trivial workflows (and `hold`, whose node sleeps in a process with BENCH_HOLD set)."""
    from bench import trivial_graph
    from service.workflows import WORKFLOWS

    for n in (1, 8):
        wf = trivial_graph.workflow(n)
        WORKFLOWS[wf.name] = wf
    hold = trivial_graph.workflow(1, name="hold", step=_hold_step)
    WORKFLOWS[hold.name] = hold


async def _hold_step(state: dict) -> dict:
    if os.environ.get(HOLD):
        await asyncio.sleep(3600)
    return {"n": state.get("n", 0) + 1}


@asynccontextmanager
async def no_backends(settings: Any, **kw: Any) -> AsyncIterator[Any]:
    """The real components without Chromium or models: the trivial graphs need no run context."""
    from service.wiring import open_components

    async with open_components(settings, run_jobs=False, evaluations=False) as parts:
        parts.contexts = {"trivial1": None, "trivial8": None, "hold": None}
        yield parts


def worker_main(data_dir: str) -> None:
    from service.settings import Settings
    from service.worker import run_worker

    register()
    settings = Settings(data_dir=Path(data_dir))
    import service.jobs as jobs_mod

    real = jobs_mod.open_service

    def patched(settings: Any, **kw: Any) -> Any:
        return real(settings, **{**kw, "components": no_backends})

    import service.worker as worker_mod

    worker_mod.open_service = patched  # type: ignore[assignment]
    asyncio.run(run_worker(settings))


@contextlib.contextmanager
def _no_database() -> Iterator[None]:
    yield None  # the SQLite default


class Workers:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env, self.procs = tmp, env, []  # type: ignore[var-annotated]

    def start(self, n: int = 1, **extra: str) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(n):
            d = self.tmp / f"w{len(self.procs)}"
            log = (self.tmp / f"w{len(self.procs)}.log").open("ab")
            p = subprocess.Popen(
                [sys.executable, __file__, "--worker", str(d)],
                env={**self.env, **extra},
                stdout=log,
                stderr=log,
            )
            self.procs.append(p)
            started.append(p)
        return started

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGCONT)
                    p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


@asynccontextmanager
async def service(database_url: str | None, tmp: Path, **settings: Any) -> AsyncIterator[Any]:
    from service.jobs import open_service
    from service.settings import Settings

    s = Settings(data_dir=tmp / "submitter", database_url=database_url, checkpoint_url=None, **settings)
    async with open_service(s, run_jobs=False, components=no_backends) as jobs:
        yield jobs


def env_for(database_url: str | None, tmp: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADGRAPH_LOG_LEVEL": "WARNING", **extra}
    if database_url:
        env["ADGRAPH_DATABASE_URL"] = database_url
    else:  # the SQLite default: the workers share the submitter's data directory's databases
        env["ADGRAPH_DATABASE_URL"] = f"sqlite:///{tmp / 'submitter' / 'jobs.db'}"
        env["ADGRAPH_CHECKPOINT_URL"] = f"sqlite:///{tmp / 'submitter' / 'checkpoints.db'}"
    return env


async def wait_finished(jobs: Any, ids: list[str], limit_s: float = 600) -> list[Any]:
    from service.accounts import LOCAL

    async with asyncio.timeout(limit_s):
        for i in ids:
            async for _ in jobs.events(LOCAL, i):
                pass
    return [await jobs.store.get(i) for i in ids]


async def event_time(jobs: Any, job_id: str, kind: str) -> dt.datetime:
    evs = [e for e in await jobs.store.events(job_id) if e.type == kind]
    return evs[-1].created_at


def _ms(a: dt.datetime, b: dt.datetime) -> float:
    return (b - a).total_seconds() * 1000


async def overhead(database_url: str | None, tmp: Path, runs: int) -> tuple[list[float], ...]:
    from service.accounts import LOCAL

    async with service(database_url, tmp) as jobs:
        workers = Workers(tmp, env_for(database_url, tmp))
        workers.start(1)
        try:
            warm = await jobs.submit(LOCAL, "trivial1", {"n": 0})
            await wait_finished(jobs, [warm.id], 120)
            pickup, queue, total = [], [], []
            for _ in range(runs):
                job = await jobs.submit(LOCAL, "trivial1", {"n": 0})
                [done] = await wait_finished(jobs, [job.id])
                assert done.status == "succeeded", done.error
                at = {e.type: e.created_at for e in await jobs.store.events(job.id)}  # the last of each
                pickup.append(_ms(done.created_at, at["job_started"]))
                # the queue's part: to the job's pickup, its claim and start, and from its last
                # checkpoint to its end; the graph's own run (checkpoints, node events) lies between
                start, end = (
                    _ms(at["job_started"], at["job_running"]),
                    _ms(at["checkpoint"], at["job_finished"]),
                )
                queue.append(pickup[-1] + start + end)
                total.append(_ms(done.created_at, at["job_finished"]))
            return pickup, queue, total
        finally:
            workers.stop()


async def throughput(database_url: str, tmp: Path, n_workers: int, n_jobs: int) -> float:
    from service.accounts import LOCAL

    async with service(database_url, tmp) as jobs:
        workers = Workers(tmp, env_for(database_url, tmp))
        workers.start(n_workers)
        try:
            warm = [await jobs.submit(LOCAL, "trivial8", {"n": 0}) for _ in range(n_workers)]
            await wait_finished(jobs, [j.id for j in warm], 120)
            ids = [(await jobs.submit(LOCAL, "trivial8", {"n": 0})).id for _ in range(n_jobs)]
            done = await wait_finished(jobs, ids)
            assert all(j.status == "succeeded" for j in done)
            last = max([await event_time(jobs, i, "job_finished") for i in ids])
            first = min(j.created_at for j in done)
            return n_jobs / (last - first).total_seconds()
        finally:
            workers.stop()


async def death(database_url: str, tmp: Path, how: signal.Signals, lease_s: float) -> float:
    """Seconds from the holding worker's SIGKILL/SIGSTOP to the job's next attempt starting elsewhere."""
    from service.accounts import LOCAL

    async with service(database_url, tmp) as jobs:
        env = env_for(database_url, tmp, ADGRAPH_LEASE_S=str(lease_s))
        workers = Workers(tmp, env)
        [holder] = workers.start(1, **{HOLD: "1"})
        try:
            job = await jobs.submit(LOCAL, "hold", {"n": 0})
            async with asyncio.timeout(60):  # until the holder is inside the node
                async for ev in jobs.events(LOCAL, job.id):
                    if ev.type == "node_started":
                        break
            workers.start(1)
            await workers_registered(
                jobs, 2
            )  # the second worker up and idle: its start-up is not the measure
            holder.send_signal(how)
            t_dead = dt.datetime.now(dt.UTC)
            if how == signal.SIGKILL:
                holder.wait()  # reaped, as its parent (a supervisor, Kubernetes) would
            [done] = await wait_finished(jobs, [job.id], 120)
            assert done.status == "succeeded" and done.attempts == 2, (done.status, done.attempt_log)
            again = dt.datetime.fromisoformat(done.attempt_log[-1]["started_at"])
            return (again - t_dead).total_seconds()
        finally:
            if holder.poll() is None:
                holder.send_signal(signal.SIGKILL)
            workers.stop()


async def workers_registered(jobs: Any, n: int) -> None:
    """Until `n` procrastinate workers have registered (each does once it listens for jobs)."""
    connector = jobs.runner.queue.app.connector
    async with asyncio.timeout(60):
        while True:
            row = await connector.execute_query_one_async("SELECT count(*) AS n FROM procrastinate_workers")
            if row["n"] >= n:
                return
            await asyncio.sleep(0.1)  # noqa: ASYNC110 - another process's start-up: nothing to wait on here


async def loop_stalls(tmp: Path, n_jobs: int = 4) -> tuple[float, float]:
    """The longest the worker's event loop went unanswered while it ran real ad jobs (embedded defaults):
    heartbeats, lease renewals and the queue's listener all run on it. (max, p99) in ms."""
    from service.accounts import LOCAL
    from service.jobs import open_service
    from service.settings import Settings

    s = Settings(data_dir=tmp / "lag", database_url=None, checkpoint_url=None, max_concurrent_jobs=1)
    lags: list[float] = []
    async with open_service(s, worker=True, evaluations=False) as jobs:
        photo = await jobs.upload(LOCAL, (ROOT / "tests" / "data" / "photos" / "banana.png").read_bytes())
        warm = await jobs.submit(LOCAL, "ad", {"product_image": photo.id, "headline": "예열"})
        await wait_finished(jobs, [warm.id], 120)
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append((time.perf_counter() - t - 0.01) * 1000)

        task = asyncio.create_task(probe())
        ids = [
            (
                await jobs.submit(
                    LOCAL, "ad", {"product_image": photo.id, "headline": f"바나나 {i}", "seed": i}
                )
            ).id
            for i in range(n_jobs)
        ]
        done = await wait_finished(jobs, ids, 300)
        stop.set()
        await task
        assert all(j.status == "succeeded" for j in done)
    lags.sort()
    return lags[-1], lags[int(len(lags) * 0.99)]


def _median_p90(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ms (p90 {statistics.quantiles(xs, n=10)[-1]:.1f})"


async def main(n_jobs: int, runs: int) -> None:
    register()
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print(dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"queue overhead, 1-node graph, one job at a time, {runs} jobs, median (p90):")
        print("  pickup: created → started; queue: pickup + start + last checkpoint → finished;")
        print("  total: created → finished (the graph's durable run included)")
        for name, url_of in (
            ("procrastinate/PostgreSQL", fresh_database),
            ("local queue/SQLite", _no_database),
        ):
            with url_of() as url:
                pick, queue, total = await overhead(url, tmp / f"ovh-{name[:5]}", runs)
            figures = f"pickup {_median_p90(pick)}  queue {_median_p90(queue)}  total {_median_p90(total)}"
            print(f"  {name:24s}  {figures}")

        print(f"throughput, 8-node graph, {n_jobs} jobs submitted at once (procrastinate/PostgreSQL):")
        for n in (1, 2, 4):
            with fresh_database() as url:
                rate = await throughput(url, tmp / f"tp{n}", n, n_jobs)
            print(f"  {n} worker process{'es' if n > 1 else ''}: {rate:6.1f} jobs/s")

        worst, p99 = await loop_stalls(tmp)
        print(f"a worker's event loop over 4 real ad jobs: longest stall {worst:.1f} ms, p99 {p99:.1f} ms")

        lease = 15.0
        print(f"a worker's death to its job running elsewhere (ADGRAPH_LEASE_S={lease:g}, the default):")
        for how in (signal.SIGKILL, signal.SIGSTOP):
            with fresh_database() as url:
                s = await death(url, tmp / f"death-{how.name}", how, lease)
            print(f"  {how.name}: {s:5.1f} s")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
    else:
        ap = argparse.ArgumentParser()
        ap.add_argument("--jobs", type=int, default=120)
        ap.add_argument("--runs", type=int, default=40)
        args = ap.parse_args()
        asyncio.run(main(args.jobs, args.runs))
