"""The job store's reads on a real SQLite file shared by two stores (the API process and a worker): they see
every commit at once, wait off the event loop when the file is locked, and the event tail wakes a stream
for an event the other store wrote."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
    try:
        read = asyncio.create_task(api.get(job_id))
        ticks = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:  # the loop keeps turning while the read waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks >= 10
        assert not read.done()
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
    tail = EventTail(bus, api.latest_event_ids, interval=0.01)
    tail.start()
    try:
        wake = bus.subscribe(watched)
        await asyncio.sleep(0.1)  # the tail has seen the job's current newest event
        wake.clear()
        await worker.add_event(other, "node_finished", {"name": "segment"})
        await asyncio.sleep(0.1)
        assert not wake.is_set()  # another job's event wakes nobody here
        await worker.add_event(watched, "node_finished", {"name": "segment"})
        await asyncio.wait_for(wake.wait(), 2)
        assert [e.type for e in await api.events(watched)][-1] == "node_finished"
        bus.unsubscribe(watched, wake)
        assert bus.jobs() == []
    finally:
        await tail.stop()
