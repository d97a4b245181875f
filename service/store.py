"""The job store: jobs as rows (the queue), leases, events and timings, over SQLAlchemy async."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, Row, Select, and_, bindparam, create_engine, func, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.pool import StaticPool

from kernel.errors import AdgraphError
from service.db import Job, JobEvent, NodeTiming, utcnow

TERMINAL = ("succeeded", "failed", "cancelled")
_JOB_BY_ID = select(Job.__table__).where(Job.id == bindparam("job_id"))


def check_job_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(job_id))
    except (ValueError, AttributeError, TypeError):
        raise AdgraphError("INVALID_INPUT", f"malformed job id {job_id!r}: expected a UUID") from None


class JobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._reader = _sqlite_reader(engine) if self.is_sqlite else None
        self._pending: list[tuple[Job, JobEvent, asyncio.Future[None]]] = []
        self._flushing = False

    def close(self) -> None:
        if self._reader is not None:
            self._reader.dispose()

    async def _rows(self, stmt: Select[Any], params: dict[str, Any] | None = None) -> list[Row[Any]]:
        """A read. SQLite's run on the event loop's own thread over one plain connection: a lookup by key
        takes ~0.1 ms there, while each aiosqlite call hands off to its thread and back (several per
        query; with the cores busy each hand-off may wait for one, which was most of a status poll's p99).
        A reader never waits in WAL mode; if the file is locked anyway (recovery after a crash), the read
        goes through the pooled path, which waits off the loop."""
        if self._reader is not None:
            try:
                with self._reader.connect() as conn:
                    return list(conn.execute(stmt, params).all())
            except OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
        async with self.engine.connect() as conn:
            return list((await conn.execute(stmt, params)).all())

    # -- jobs --------------------------------------------------------------------------------------

    async def create(
        self,
        job_id: str,
        workflow: str,
        job_input: dict[str, Any],
        *,
        parent: tuple[str, str] | None = None,
        lease: tuple[str, float] | None = None,
    ) -> Job:
        """A new job, queued; or with `lease` = (owner, seconds), already running for that owner (a job the
        creating process runs itself, like the CLI's: no worker can take it first)."""
        now = utcnow()
        job = Job(
            id=job_id,
            workflow=workflow,
            status="running" if lease else "queued",
            input=job_input,
            progress={"percent": 0, "node": None, "message": "queued", "eta_seconds": None},
            nodes=[],
            cancel_requested=False,
            attempts=1 if lease else 0,
            created_at=now,
            updated_at=now,
            parent_job_id=parent[0] if parent else None,
            parent_checkpoint_id=parent[1] if parent else None,
            lease_owner=lease[0] if lease else None,
            lease_expires_at=now + dt.timedelta(seconds=lease[1]) if lease else None,
        )
        event = JobEvent(job_id=job_id, type="job_queued", data={"status": "queued"}, created_at=now)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((job, event, done))
        if not self._flushing:
            self._flushing = True
            asyncio.create_task(self._flush_creates())
        await done  # returns once the job is committed: an accepted job is a stored job
        return job

    async def _flush_creates(self) -> None:
        """Group commit: every job submitted while the previous batch was committing goes in one transaction.

        The database takes one writer at a time (SQLite always, PostgreSQL on the queue's hot rows), so one
        commit for many submissions is what lets submission keep up under load.
        """
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    async with self.sessions.begin() as s:
                        s.add_all([obj for job, event, _ in batch for obj in (job, event)])
                except Exception as e:
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(e)
                    continue
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flushing = False

    async def get(self, job_id: str) -> Job:
        job_id = check_job_id(job_id)
        # Core, not a session, and a statement built once: the most frequent request (status polls) costs
        # one short read.
        rows = await self._rows(_JOB_BY_ID, {"job_id": job_id})
        if not rows:
            raise AdgraphError("JOB_NOT_FOUND", f"no job {job_id}")
        return Job(**rows[0]._mapping)

    async def list(
        self, *, status: str | None, workflow: str | None, limit: int, before: tuple[dt.datetime, str] | None
    ) -> list[Job]:
        q = select(Job)
        if status:
            q = q.where(Job.status == status)
        if workflow:
            q = q.where(Job.workflow == workflow)
        if before:
            q = q.where(
                or_(Job.created_at < before[0], and_(Job.created_at == before[0], Job.id < before[1]))
            )
        q = q.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        async with self.sessions() as s:
            return list((await s.scalars(q)).all())

    async def update(self, job_id: str, **values: Any) -> None:
        async with self.sessions.begin() as s:
            await s.execute(update(Job).where(Job.id == job_id).values(**values, updated_at=utcnow()))

    async def transition(self, job_id: str, from_statuses: Sequence[str], **values: Any) -> bool:
        """Set `values` only if the job is in one of `from_statuses`; True if it was."""
        async with self.sessions.begin() as s:
            res = await s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(from_statuses))
                .values(**values, updated_at=utcnow())
            )
        return res.rowcount == 1

    # -- the queue ---------------------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        lease_s: float,
        *,
        job_id: str | None = None,
        from_statuses: Sequence[str] = ("queued",),
        **values: Any,
    ) -> Job | None:
        """Lease a job to `owner` and mark it running: the oldest queued one, or `job_id` if it is in one of
        `from_statuses` (a job resumed in the process that asks); None if there is none."""
        now = utcnow()
        target: Any = job_id
        if job_id is None:
            target = select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.id).limit(1)
            if not self.is_sqlite:  # several workers: never hand one job to two of them
                target = target.with_for_update(skip_locked=True)
            target = target.scalar_subquery()
        async with self.sessions.begin() as s:
            res = await s.execute(
                update(Job)
                .where(Job.id == target, Job.status.in_(from_statuses))
                .values(
                    status="running",
                    lease_owner=owner,
                    lease_expires_at=now + dt.timedelta(seconds=lease_s),
                    attempts=Job.attempts + 1,
                    updated_at=now,
                    **values,
                )
                .returning(Job.id)
            )
            claimed = res.scalar_one_or_none()
            if claimed is None:
                return None
            s.add(JobEvent(job_id=claimed, type="job_started", data={"status": "running"}, created_at=now))
        return await self.get(claimed)

    async def renew(self, job_id: str, owner: str, lease_s: float) -> Job | None:
        """Extend the lease; None if this owner lost it (the job was re-queued elsewhere)."""
        async with self.sessions.begin() as s:
            res = await s.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
                .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
            )
            if res.rowcount != 1:
                return None
            return await s.get(Job, job_id)

    async def requeue_stale(self, *, orphaned: Callable[[str], bool] | None = None) -> list[str]:
        """Put running jobs back in the queue whose lease expired, or whose owner `orphaned(owner)` says is
        gone (a process of this machine that no longer exists: no need to wait for its lease)."""
        now = utcnow()
        async with self.sessions.begin() as s:
            rows = (
                await s.execute(
                    select(Job.id, Job.lease_owner, Job.lease_expires_at).where(Job.status == "running")
                )
            ).all()
            ids = [
                job_id
                for job_id, owner, expires in rows
                if expires is None or expires < now or (orphaned is not None and orphaned(owner or ""))
            ]
            if ids:
                await s.execute(
                    update(Job)
                    .where(Job.id.in_(ids), Job.status == "running")
                    .values(status="queued", lease_owner=None, lease_expires_at=None, updated_at=now)
                )
                for job_id in ids:
                    s.add(JobEvent(job_id=job_id, type="job_requeued", data={"reason": "lease lost"}))
        return ids

    async def cancel_requested(self, job_id: str) -> bool:
        rows = await self._rows(select(Job.cancel_requested).where(Job.id == job_id))
        return bool(rows and rows[0][0])

    async def timings_since(self, after_id: int) -> list[tuple[int, str, str, float]]:
        async with self.engine.connect() as conn:
            q = (
                select(NodeTiming.id, NodeTiming.workflow, NodeTiming.node, NodeTiming.seconds)
                .where(NodeTiming.id > after_id)
                .order_by(NodeTiming.id)
                .limit(10_000)
            )
            return [tuple(r) for r in (await conn.execute(q)).all()]

    async def counts(self) -> dict[str, int]:
        async with self.sessions() as s:
            rows = (await s.execute(select(Job.status, func.count()).group_by(Job.status))).all()
        return {status: n for status, n in rows}

    # -- events and timings ------------------------------------------------------------------------

    async def progress(
        self,
        job_id: str,
        values: dict[str, Any],
        type_: str,
        data: dict[str, Any],
        timing: tuple[str, str, float] | None = None,
    ) -> JobEvent:
        """A node boundary in one transaction: the job's new progress, its event and the node's timing."""
        now = utcnow()
        ev = JobEvent(job_id=job_id, type=type_, data=data, created_at=now)
        async with self.sessions.begin() as s:
            await s.execute(update(Job).where(Job.id == job_id).values(**values, updated_at=now))
            s.add(ev)
            if timing is not None:
                s.add(NodeTiming(workflow=timing[0], node=timing[1], seconds=timing[2], created_at=now))
        return ev

    async def add_event(self, job_id: str, type_: str, data: dict[str, Any]) -> JobEvent:
        ev = JobEvent(job_id=job_id, type=type_, data=data, created_at=utcnow())
        async with self.sessions.begin() as s:
            s.add(ev)
        return ev

    async def events(self, job_id: str, after_id: int = 0) -> list[JobEvent]:
        q = (
            select(JobEvent.__table__)
            .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
            .order_by(JobEvent.id)
        )
        return [JobEvent(**r._mapping) for r in await self._rows(q)]

    async def latest_event_ids(self, job_ids: Sequence[str]) -> dict[str, int]:
        """The newest event id of each of `job_ids` that has one (the `EventTail`'s one read per tick)."""
        q = (
            select(JobEvent.job_id, func.max(JobEvent.id))
            .where(JobEvent.job_id.in_(job_ids))
            .group_by(JobEvent.job_id)
        )
        return {job_id: last for job_id, last in await self._rows(q)}

    async def latest_event(self, job_id: str) -> JobEvent | None:
        q = select(JobEvent.__table__).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc()).limit(1)
        rows = await self._rows(q)
        return JobEvent(**rows[0]._mapping) if rows else None

    async def typical_seconds(
        self, workflow: str, nodes: Sequence[str], window: int = 20
    ) -> dict[str, float]:
        """Median of each node's last `window` runs."""
        out: dict[str, float] = {}
        async with self.sessions() as s:
            for node in nodes:
                q = (
                    select(NodeTiming.seconds)
                    .where(NodeTiming.workflow == workflow, NodeTiming.node == node)
                    .order_by(NodeTiming.id.desc())
                    .limit(window)
                )
                xs = sorted((await s.scalars(q)).all())
                if xs:
                    out[node] = xs[len(xs) // 2]
        return out


def _sqlite_reader(engine: AsyncEngine) -> Engine | None:
    """A plain (pysqlite) engine over the same file for JobStore._rows; None for an in-memory database."""
    if engine.url.database in (None, "", ":memory:"):
        return None
    return create_engine(
        engine.url.set(drivername="sqlite"),
        poolclass=StaticPool,  # one connection, used only from the event loop's thread
        connect_args={"check_same_thread": False, "timeout": 0},  # locked: fall back, don't wait
    )
