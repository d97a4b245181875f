"""The job store's reads on a real SQLite file shared by two stores (the API process and a worker): they see
every commit at once, wait off the event loop when the file is locked, and the event tail wakes a stream
for an event the other store wrote."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from service.db import make_engine, migrate
from service.events import EventBus, EventTail
from service.store import JobStore


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[JobStore, JobStore, Path]]:
    """Two stores over one jobs.db, each with its own engine, as the API and a worker have."""
    path = tmp_path / "jobs.db"
    api_engine, worker_engine = make_engine(f"sqlite:///{path}"), make_engine(f"sqlite:///{path}")
    await migrate(api_engine)
    api, worker = JobStore(api_engine), JobStore(worker_engine)
    try:
        yield api, worker, path
    finally:
        api.close()
        worker.close()
        await api_engine.dispose()
        await worker_engine.dispose()


async def test_a_read_sees_what_another_connection_just_committed(stores) -> None:
    api, worker, _ = stores
    job_id = str(uuid.uuid4())
    await worker.create(job_id, "ad", {"headline": "x"})
    assert (await api.get(job_id)).status == "queued"
    for status in ("running", "succeeded"):
        await worker.update(job_id, status=status, progress={"percent": 100, "node": "render"})
        job = await api.get(job_id)
        assert job.status == status
        assert job.progress["node"] == "render"  # JSON columns come back decoded
        assert job.updated_at.tzinfo is not None
    await worker.add_event(job_id, "job_finished", {"status": "succeeded"})
    assert [e.type for e in await api.events(job_id)] == ["job_queued", "job_finished"]
    assert (await api.latest_event(job_id)).type == "job_finished"


async def test_a_read_while_the_file_is_locked_waits_off_the_event_loop(stores) -> None:
    api, worker, path = stores
    job_id = str(uuid.uuid4())
    await worker.create(job_id, "ad", {})
    # A connection in exclusive locking mode that has written keeps every other reader out, WAL or not. It
    # gets that lock only while no other connection is open; the stores reconnect on their next read.
    for store in (api, worker):
        store.close()
        await store.engine.dispose()
    holder = sqlite3.connect(path, timeout=5, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job_id,))
    holder.commit()
    # The read turning to the pooled (aiosqlite) engine: its connection opens, and waits for the lock, in
    # that connection's own thread.
    waiting = asyncio.Event()

    @event.listens_for(api.engine.sync_engine, "do_connect")
    def _connecting(*_: Any) -> None:
        waiting.set()

    try:
        read = asyncio.create_task(api.get(job_id))
        await asyncio.wait_for(waiting.wait(), 10)
        # the loop still runs other work while the read waits: a callback scheduled now is served
        served = asyncio.Event()
        asyncio.get_running_loop().call_soon(served.set)
        await asyncio.wait_for(served.wait(), 10)
        assert not read.done()  # and the read is still waiting for the lock
    finally:
        holder.close()  # the exclusive lock goes with the connection
    job = await asyncio.wait_for(read, 10)
    assert job.status == "running"


async def test_the_tail_wakes_a_stream_for_an_event_another_process_wrote(stores) -> None:
    api, worker, _ = stores
    watched, other = str(uuid.uuid4()), str(uuid.uuid4())
    await worker.create(watched, "ad", {})
    await worker.create(other, "ad", {})
    bus = EventBus()
    polls = Polls(api.latest_event_ids)
    tail = EventTail(bus, polls, interval=0.01)
    tail.start()
    try:
        wake = bus.subscribe(watched)
        await asyncio.wait_for(wake.wait(), 10)  # the tail's first read: the job's current newest event
        wake.clear()
        await worker.add_event(other, "node_finished", {"name": "segment"})
        await polls.next()  # a whole read of the tail that began after that write
        assert not wake.is_set()  # another job's event wakes nobody here
        await worker.add_event(watched, "node_finished", {"name": "segment"})
        await asyncio.wait_for(wake.wait(), 2)
        assert [e.type for e in await api.events(watched)][-1] == "node_finished"
        bus.unsubscribe(watched, wake)
        assert bus.jobs() == []
    finally:
        await tail.stop()


class Polls:
    """The tail's read of the newest event ids, which tells a test when a read that began after a given
    moment has finished (and so the tail has acted on what it found)."""

    def __init__(self, read: Callable[[list[str]], Awaitable[dict[str, int]]]) -> None:
        self.read = read
        self._waiting: list[asyncio.Event] = []

    async def __call__(self, job_ids: list[str]) -> dict[str, int]:
        mine, self._waiting = self._waiting, []
        latest = await self.read(job_ids)
        for done in mine:  # their waiters run after the tail has published what this read found
            done.set()
        return latest

    async def next(self) -> None:
        done = asyncio.Event()
        self._waiting.append(done)
        await asyncio.wait_for(done.wait(), 10)
