"""Who may run a job: a runner whose process died on this machine is recognised at once, one whose lease ran
out is taken over, a live one keeps its job, and a runner that lost its lease cannot write over the job's
new runner (real SQLite, real processes)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.db import make_engine, migrate
from service.owners import new_owner, orphaned
from service.store import JobStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    await migrate(engine)
    store = JobStore(engine)
    try:
        yield store
    finally:
        store.close()
        await engine.dispose()


def owner_of_a_child() -> tuple[str, subprocess.Popen[bytes]]:
    """The owner string a child process would have (it reads it itself), and the child, still alive."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from service.owners import new_owner; print(new_owner(), flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    return child.stdout.readline().decode().strip(), child


def kill(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()


def test_a_dead_process_of_this_machine_is_orphaned_and_a_live_one_or_a_stranger_is_not() -> None:
    owner, child = owner_of_a_child()
    try:
        assert not orphaned(owner)
        assert not orphaned(new_owner())  # this process
    finally:
        kill(child)
    assert orphaned(owner)
    host, ns, pid, start, token = owner.split(":")
    assert not orphaned(":".join(["another-host", ns, pid, start, token]))  # its lease decides
    assert not orphaned(":".join([host, "1", pid, start, token]))  # another PID namespace (container)
    assert not orphaned("host:1234:token")  # not ours to judge
    # the same pid now running another process is not the owner any more
    mine = new_owner().split(":")
    assert orphaned(":".join([*mine[:3], str(int(mine[3]) + 1), mine[4]]))


async def _running(store: JobStore, owner: str, *, expires_in_s: float) -> str:
    job_id = str(uuid.uuid4())
    await store.create(job_id, "ad", {}, lease=(owner, 15.0))
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in_s)
    await store.update(job_id, lease_expires_at=expires)
    return job_id


async def test_requeue_takes_the_jobs_of_dead_or_lapsed_runners_and_leaves_live_ones(store) -> None:
    dead_owner, child = owner_of_a_child()
    kill(child)
    live = await _running(store, new_owner(), expires_in_s=60)
    lapsed = await _running(store, new_owner(), expires_in_s=-1)
    dead = await _running(store, dead_owner, expires_in_s=60)
    assert sorted(await store.requeue_stale(orphaned=orphaned)) == sorted([lapsed, dead])
    assert (await store.get(live)).status == "running"
    assert {(await store.get(j)).status for j in (lapsed, dead)} == {"queued"}
    assert [e.type for e in await store.events(dead)][-1] == "job_requeued"


async def test_a_resume_here_claims_only_a_job_whose_runner_is_gone(store) -> None:
    mine = new_owner()
    live = await _running(store, new_owner(), expires_in_s=60)
    assert await store.claim(mine, 15.0, job_id=live, from_statuses=["failed"], or_stale=True) is None
    lapsed = await _running(store, new_owner(), expires_in_s=-1)
    held = await store.claim(mine, 15.0, job_id=lapsed, from_statuses=["failed"], or_stale=True)
    assert held is not None and held.lease_owner == mine and held.attempts == 2


async def test_a_runner_that_lost_its_lease_cannot_write_over_the_new_one(store) -> None:
    first, second = new_owner(), new_owner()
    job = await _running(store, first, expires_in_s=-1)
    assert await store.requeue_stale(orphaned=orphaned) == [job]
    assert await store.claim(second, 15.0) is not None  # another runner took it over
    assert not await store.update(job, owner=first, status="succeeded")  # the old one's finish is refused
    await store.progress(job, {"progress": {"percent": 99}}, "node_finished", {"name": "render"}, owner=first)
    row = await store.get(job)
    assert (row.status, row.lease_owner, row.progress["percent"]) == ("running", second, 0)
    assert await store.update(job, owner=second, status="succeeded")
