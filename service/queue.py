"""What hands queued jobs to the processes that run them: one interface, two engines.

The jobs table is always the record of a job (status, attempts, nodes, events, lease); a queue only
delivers "run job X" to a worker. A delivery is safe to repeat: the worker claims the row first (only a
queued job, or one whose runner is gone, can be claimed), so a second delivery of the same job is dropped.

- `LocalQueue` (SQLite, the embedded default): the jobs table itself, polled by the runners of one machine
  and woken at once by the API in the same process.
- `ProcrastinateQueue` (PostgreSQL): procrastinate's queue, so workers on any number of machines take jobs
  as they are deferred (LISTEN/NOTIFY), by queue name and priority, each sending heartbeats. Its worker
  runs `adgraph.run_job(job_id)` in this process's runner. A worker that dies leaves its procrastinate job
  "doing": the reaper of every live worker retries stalled ones and re-queues the rows whose lease ran out.

Both take the same calls from the application layer (`enqueue`) and the runner (`serve`); the contract
tests in tests/integration/test_queue_contract.py run against both.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from service.db import Job

log = logging.getLogger("adgraph.queue")

TASK = "adgraph.run_job"
Deliver = Callable[[str], Awaitable[None]]
"""The runner's side: claim job X and run it (a no-op when it is not claimable)."""


def queue_of(job: Job) -> str:
    """The queue a job waits in: its own (a capability), else its workflow's name."""
    return job.queue or job.workflow


class JobQueue(Protocol):
    engine: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def enqueue(self, job: Job) -> None:
        """Make `job` (queued in the jobs table) reach a worker; at `job.not_before` if it is set."""
        ...

    async def serve(self, deliver: Deliver, *, queues: Sequence[str] | None, concurrency: int) -> None:
        """Run deliveries of the named queues (all if None), `concurrency` at a time, until cancelled;
        a cancel stops taking work and waits for the running ones (the runner drains them first)."""
        ...

    async def retry_stalled(self, stall_s: float) -> int:
        """Give the jobs of workers silent for `stall_s` to the living; how many."""
        ...


class LocalQueue:
    """The jobs table as the queue: each of `serve`'s loops claims the highest-priority due job and runs
    it (`take_next`), or waits to be woken by `enqueue` in this process, or `idle_poll_s`."""

    engine = "local"

    def __init__(
        self, take_next: Callable[[Sequence[str] | None], Awaitable[bool]], idle_poll_s: float
    ) -> None:
        self._take_next = take_next
        self.idle_poll_s = idle_poll_s
        """How often an idle worker looks for work when no in-process API wakes it."""
        self._wake = asyncio.Event()
        self._closing = False

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def enqueue(self, job: Job) -> None:
        self._wake.set()

    async def serve(self, deliver: Deliver, *, queues: Sequence[str] | None, concurrency: int) -> None:
        async def loop() -> None:
            while not self._closing:
                try:
                    ran = await self._take_next(queues)
                except Exception:  # the database blinked; try again shortly
                    log.exception("claiming a job failed")
                    ran = False
                if not ran and not self._closing:
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self.idle_poll_s)

        self._closing = False
        tasks = [asyncio.create_task(loop(), name=f"job-worker-{i}") for i in range(concurrency)]
        try:
            await asyncio.shield(asyncio.gather(*tasks))
        except asyncio.CancelledError:  # stop taking work; the runs in progress end (drained) first
            self._closing = True
            self._wake.set()
            try:
                await asyncio.gather(*tasks)
            except asyncio.CancelledError:  # cancelled again: stop them where they are
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def retry_stalled(self, stall_s: float) -> int:
        return 0  # one machine: the runner's reaper sees a dead process of it at once


class ProcrastinateQueue:
    """procrastinate (pinned in pyproject.toml) on PostgreSQL, or on its in-memory connector in tests."""

    engine = "procrastinate"

    def __init__(
        self, connector: Any, *, heartbeat_s: float = 2.0, poll_s: float = 1.0, grace_s: float = 60.0
    ) -> None:
        import procrastinate

        self.app = procrastinate.App(connector=connector)
        self.heartbeat_s, self.poll_s, self.grace_s = heartbeat_s, poll_s, grace_s
        self._deliver: Deliver | None = None

        async def run_job(job_id: str) -> None:
            if self._deliver is None:  # a process that only defers never gets here
                raise RuntimeError("this process runs no jobs")
            await self._deliver(job_id)

        self.app.task(name=TASK, pass_context=False)(run_job)

    @classmethod
    def for_url(cls, url: str, **kw: Any) -> ProcrastinateQueue:
        from procrastinate import PsycopgConnector

        return cls(PsycopgConnector(conninfo=libpq_url(url), min_size=1, max_size=4), **kw)

    async def open(self) -> None:
        await self.app.open_async()
        await self._ensure_schema()

    async def close(self) -> None:
        await self.app.close_async()

    async def _ensure_schema(self) -> None:
        """procrastinate's tables, made once per database (an advisory lock keeps two first starts apart)."""
        connector = self.app.connector
        if type(connector).__name__ == "InMemoryConnector":
            return
        pool = connector.pool
        async with pool.connection() as conn:
            await conn.set_autocommit(True)
            await conn.execute("SELECT pg_advisory_lock(727302)")
            try:
                row = await (
                    await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
                ).fetchone()
                if not row[0]:
                    await conn.execute(self.app.schema_manager.get_schema())
            finally:
                await conn.execute("SELECT pg_advisory_unlock(727302)")

    async def enqueue(self, job: Job) -> None:
        options: dict[str, Any] = {"queue": queue_of(job), "priority": job.priority or 0}
        if job.thread_id:  # the jobs of one thread run one after another, in the order deferred
            options["lock"] = f"thread:{job.thread_id}"
        if job.not_before is not None and job.not_before > dt.datetime.now(dt.UTC):
            options["schedule_at"] = job.not_before
        await self.app.configure_task(TASK, **options).defer_async(job_id=job.id)

    async def serve(self, deliver: Deliver, *, queues: Sequence[str] | None, concurrency: int) -> None:
        self._deliver = deliver
        await self.app.run_worker_async(
            queues=list(queues) if queues else None,
            concurrency=concurrency,
            name="adgraph",
            install_signal_handlers=False,  # `adgraph worker` handles SIGTERM: readiness, drain, then this
            update_heartbeat_interval=self.heartbeat_s,
            fetch_job_polling_interval=self.poll_s,
            abort_job_polling_interval=self.poll_s,
            shutdown_graceful_timeout=self.grace_s,
            delete_jobs="successful",  # the jobs table keeps the history; procrastinate's would only grow
        )

    async def retry_stalled(self, stall_s: float) -> int:
        stalled = list(await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stall_s))
        retried = 0
        for job in stalled:
            try:
                await self.app.job_manager.retry_job(job)
                retried += 1
            except Exception:  # another worker's reaper retried it first
                log.debug("stalled job %s not retried here", job.id, exc_info=True)
        if retried:
            log.info("re-delivered %d jobs of workers silent for %.0f s", retried, stall_s)
        return retried


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (postgresql+asyncpg://…) as libpq takes it (postgresql://…)."""
    scheme, sep, rest = url.partition("://")
    return "postgresql" + sep + rest if scheme.startswith("postgres") else url


def make_queue(settings: Any) -> ProcrastinateQueue | None:
    """procrastinate when `settings.queue_engine` says so (a runner makes its own `LocalQueue` otherwise)."""
    if settings.queue_engine != "procrastinate":
        return None
    if settings.database.startswith("sqlite"):
        raise ValueError("ADGRAPH_QUEUE=procrastinate needs ADGRAPH_DATABASE_URL=postgresql://…")
    return ProcrastinateQueue.for_url(
        settings.database, heartbeat_s=settings.lease_s / 5, grace_s=settings.worker_grace_s
    )


async def _nothing(queues: Sequence[str] | None) -> bool:
    return False


def deferring_only() -> LocalQueue:
    """The local queue of a process that runs no jobs: the workers poll the jobs table themselves."""
    return LocalQueue(_nothing, idle_poll_s=3600)
