"""One contract for every queue engine (service/queue.py): the local queue on SQLite, procrastinate on its
in-memory connector (over SQLite job rows), and procrastinate on the local PostgreSQL.

Each test runs real ad jobs on the embedded models through the application layer (`Jobs`), with a runner
that takes one job at a time, and asserts what a user of the queue would see: every job finishes, a
priority job overtakes the queue, a transient failure is retried with its attempts on the record, one that
keeps failing ends failed after the configured attempts and can be resumed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from graph.state import AD_NODES
from kernel.errors import TransientError
from service.accounts import LOCAL
from service.jobs import Jobs, open_service
from service.settings import Settings
from service.wiring import open_components
from tests.integration.api_support import Gate, HeldBackdrop, fresh_database, postgres_reachable
from tests.support import PHOTOS

pytestmark = pytest.mark.integration
ENGINES = ["local-sqlite", "procrastinate-memory", "procrastinate-postgresql"]


class CrashingRenderer:
    """The real renderer, except that its next `crash(n)` renders raise TransientError (a crashed tab).
    The render node retries a TransientError once by itself, so 2 crashes fail one job attempt."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.crashes, self.calls = inner, 0, 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def crash(self, n: int) -> None:
        with self._lock:
            self.crashes = n

    async def render_layer(self, html: str, size: tuple[int, int]) -> Any:
        with self._lock:
            self.calls += 1
            crash, self.crashes = self.crashes > 0, max(0, self.crashes - 1)
        if crash:
            raise TransientError("injected: the browser tab crashed")
        return await self.inner.render_layer(html, size)


@dataclasses.dataclass
class Rig:
    jobs: Jobs
    gate: Gate
    renderer: CrashingRenderer
    photo: str

    async def submit(self, headline: str = "달콤한 바나나", **kw: Any) -> Any:
        raw = {"product_image": self.photo, "headline": headline}
        return await self.jobs.submit(LOCAL, "ad", raw, **kw)

    async def finished(self, job_id: str, limit_s: float = 120) -> Any:
        """The job once it has ended, followed through its own event stream (no polling)."""
        async with asyncio.timeout(limit_s):
            async for _ in self.jobs.events(LOCAL, job_id):  # ends at the job's last job_finished
                pass
        return await self.jobs.get(LOCAL, job_id)


@asynccontextmanager
async def rig(engine: str, tmp: Path, **settings: Any) -> AsyncIterator[Rig]:
    gate = Gate()
    holder: dict[str, CrashingRenderer] = {}

    @asynccontextmanager
    async def components(s: Settings, **kw: Any) -> AsyncIterator[Any]:
        async with open_components(s, **kw) as parts:
            renderer = holder["r"] = CrashingRenderer(parts.renderer)
            ad = parts.contexts["ad"]
            parts.contexts = {
                **parts.contexts,
                "ad": dataclasses.replace(ad, renderer=renderer, backdrop=HeldBackdrop(ad.backdrop, gate)),
            }
            yield parts

    async def run(database_url: str | None, queue: Any) -> AsyncIterator[Rig]:
        s = Settings(
            data_dir=tmp / "data",
            database_url=database_url,
            checkpoint_url=None,
            max_concurrent_jobs=1,
            retry_backoff_s=0.05,
            max_attempts=3,
            lease_s=6,
            **settings,
        )
        async with open_service(
            s, worker=True, evaluations=False, idle_poll_s=0.1, components=components, queue=queue
        ) as jobs:
            photo = await jobs.upload(LOCAL, (PHOTOS / "banana.png").read_bytes(), "banana.png")
            try:
                yield Rig(jobs, gate, holder["r"], photo.id)
            finally:
                gate.open()

    if engine == "local-sqlite":
        async for r in run(None, None):
            yield r
    elif engine == "procrastinate-memory":
        from procrastinate.testing import InMemoryConnector

        from service.queue import ProcrastinateQueue

        async for r in run(None, ProcrastinateQueue(InMemoryConnector(), heartbeat_s=1, poll_s=0.1)):
            yield r
    else:
        if not postgres_reachable():
            pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
        with fresh_database() as url:
            async for r in run(url, None):
                assert r.jobs.runner.queue.engine == "procrastinate"
                yield r


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


async def test_every_job_submitted_finishes_once(engine: str, tmp_path: Path) -> None:
    async with rig(engine, tmp_path) as r:
        jobs = [await r.submit(f"바나나 {i}", priority=0) for i in range(4)]
        done = [await r.finished(j.id) for j in jobs]
        assert [j.status for j in done] == ["succeeded"] * 4
        for j in done:  # each ran once: one attempt, every node once
            assert j.attempts == 1 and [e["outcome"] for e in j.attempt_log] == ["succeeded"]
            assert len(j.nodes) == 8 and all(n["status"] == "succeeded" for n in j.nodes)
        page = await r.jobs.list(LOCAL, status="succeeded")
        assert {j.id for j in jobs} <= {j.id for j in page.jobs}


async def test_a_priority_job_overtakes_the_queue(engine: str, tmp_path: Path) -> None:
    async with rig(engine, tmp_path) as r:
        with r.gate.closed():
            held = await r.submit("먼저")
            assert await asyncio.to_thread(r.gate.entered.wait, 60)
            ordinary = [await r.submit(f"보통 {i}") for i in range(3)]
            urgent = await r.submit("급해요", priority=5)
        order = [held.id, *[j.id for j in ordinary], urgent.id]
        done = [await r.finished(i) for i in order]
        assert all(j.status == "succeeded" for j in done)
        started = sorted(done[1:], key=lambda j: j.attempt_log[-1]["started_at"])
        assert started[0].id == urgent.id  # taken before the three queued earlier
        assert [j.id for j in started[1:]] == [j.id for j in ordinary]  # the rest in their order


async def test_a_transient_failure_is_retried_and_the_attempts_are_recorded(
    engine: str, tmp_path: Path
) -> None:
    async with rig(engine, tmp_path) as r:
        r.renderer.crash(4)  # two job attempts' worth (each tries render twice)
        job = await r.submit("다시 해 볼게요")
        done = await r.finished(job.id)
        assert done.status == "succeeded" and done.error is None, done.error
        assert done.attempts == 3
        outcomes = [(e["attempt"], e["outcome"], e.get("error")) for e in done.attempt_log]
        assert outcomes == [
            (1, "retrying", "TRANSIENT_FAILURE"),
            (2, "retrying", "TRANSIENT_FAILURE"),
            (3, "succeeded", None),
        ]
        # the nodes before render ran once; only render ran again
        runs = [(n["name"], n["attempt"]) for n in done.nodes if n["status"] == "succeeded"]
        assert [name for name, _ in runs] == list(AD_NODES)
        assert [a for name, a in runs if name == "render"] == [3]
        assert all(a == 1 for name, a in runs if name != "render")


async def test_a_job_that_keeps_failing_ends_failed_after_its_attempts_and_can_be_resumed(
    engine: str, tmp_path: Path
) -> None:
    async with rig(engine, tmp_path) as r:
        r.renderer.crash(10**6)
        job = await r.submit("계속 실패")
        done = await r.finished(job.id)
        assert done.status == "failed" and done.error["code"] == "TRANSIENT_FAILURE"
        assert [e["outcome"] for e in done.attempt_log] == ["retrying", "retrying", "failed"]
        assert done.attempts == 3
        failed = await r.jobs.list(LOCAL, status="failed")
        assert [j.id for j in failed.jobs] == [job.id]  # the dead letters: failed jobs, with attempts

        r.renderer.crash(0)
        await r.jobs.resume(LOCAL, job.id)
        resumed = await r.finished(job.id)
        assert resumed.status == "succeeded" and resumed.attempts == 4
        assert [e["outcome"] for e in resumed.attempt_log][-1] == "succeeded"
