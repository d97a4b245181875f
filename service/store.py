"""The job store: jobs as rows (the queue), leases, events and timings, over SQLAlchemy async."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    Engine,
    Row,
    Select,
    and_,
    bindparam,
    create_engine,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import aliased
from sqlalchemy.pool import StaticPool

from kernel.errors import AdgraphError
from service.db import (
    ArtifactOwner,
    IdempotentResponse,
    Job,
    JobArtifact,
    JobEvent,
    NodeTiming,
    Thread,
    utcnow,
)
from service.owners import orphaned

_JOB_BY_ID = select(Job.__table__).where(Job.id == bindparam("job_id"))


def check_job_id(job_id: str) -> str:
    """The id as the server writes it (lowercase 8-4-4-4-12), or INVALID_INPUT: `uuid.UUID` also reads
    `{…}`, `urn:uuid:…`, uppercase and undashed forms, which would make one job answer at many URLs."""
    try:
        canonical = str(uuid.UUID(job_id))
    except (ValueError, AttributeError, TypeError):
        canonical = None
    if canonical is None or canonical != job_id:
        raise AdgraphError("INVALID_INPUT", f"malformed job id {job_id!r}: expected a UUID") from None
    return canonical


class JobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._reader = _sqlite_reader(engine) if self.is_sqlite else None
        self._pending: list[tuple[Job, list[Any], asyncio.Future[None]]] = []
        """Jobs waiting for the next group commit, with their first events and artifact references."""
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
        tenant: str = "local",
        key_id: str | None = None,
        artifact_ids: Sequence[str] = (),
        thread_id: str | None = None,
        priority: int = 0,
        queue: str | None = None,
        batch_id: str | None = None,
        batch_row: int | None = None,
        variant: tuple[str, int, bool] | None = None,
    ) -> Job:
        """A new job, queued; or with `lease` = (owner, seconds), already running for that owner (a job the
        creating process runs itself, like the CLI's: no worker can take it first). `artifact_ids`: files
        it refers to before it runs (its input, a branch's seeded state), recorded with it (see `grant`).
        `variant` = (the job that asked for variants, this one's index, whether variants are branched
        from this one): a second job with the same two is an IntegrityError."""
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
            tenant=tenant,
            key_id=key_id,
            thread_id=thread_id,
            priority=priority,
            queue=queue,
            attempt_log=[],
            batch_id=batch_id,
            batch_row=batch_row,
            variant_of=variant[0] if variant else None,
            variant=variant[1] if variant else None,
            spawn_pending=variant[2] if variant else False,
        )
        events: list[Any] = [
            JobEvent(job_id=job_id, type="job_queued", data={"status": "queued"}, created_at=now)
        ]
        if lease:  # taken at once by the process that made it
            started = JobEvent(job_id=job_id, type="job_started", data={"status": "running"}, created_at=now)
            events.append(started)
        events += [JobArtifact(job_id=job_id, artifact_id=a) for a in dict.fromkeys(artifact_ids)]
        if variant is not None and variant[1] > 0:  # made by whichever runner gets there first: one commit
            async with self.sessions.begin() as s:  # of its own, so that losing that race (IntegrityError)
                s.add_all([job, *events])  # fails no other submission of a group commit
            return job
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((job, events, done))
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
                        s.add_all([obj for job, events, _ in batch for obj in (job, *events)])
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
        self,
        *,
        status: str | None,
        workflow: str | None,
        limit: int,
        before: tuple[dt.datetime, str] | None,
        tenant: str | None = None,
    ) -> list[Job]:
        """Newest first; only `tenant`'s jobs unless it is None."""
        q = select(Job)
        if tenant is not None:
            q = q.where(Job.tenant == tenant)
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

    async def update(self, job_id: str, *, owner: str | None = None, **values: Any) -> bool:
        """Set `values`; with `owner`, only while that runner still holds the job's lease (a runner that
        lost it must not overwrite the one that took over). True if the row was written."""
        cond = [Job.id == job_id] + ([Job.lease_owner == owner] if owner is not None else [])
        async with self.sessions.begin() as s:
            res = await s.execute(update(Job).where(*cond).values(**values, updated_at=utcnow()))
        return res.rowcount == 1

    async def transition(
        self, job_id: str, from_statuses: Sequence[str], *, or_stale: bool = False, **values: Any
    ) -> bool:
        """Set `values` only if the job is in one of `from_statuses` (or, with `or_stale`, running for a
        runner that is gone: see `stale`); True if it was."""
        cond = Job.status.in_(from_statuses)
        if or_stale:
            cond = or_(cond, await self._stale_of(job_id))
        async with self.sessions.begin() as s:
            res = await s.execute(
                update(Job).where(Job.id == job_id, cond).values(**values, updated_at=utcnow())
            )
        return res.rowcount == 1

    @staticmethod
    def stale(now: dt.datetime, dead_owners: Sequence[str] = ()) -> Any:
        """The one rule for a job whose runner is gone: running, and its lease expired (or never set), or
        held by an owner known dead. Checked inside each UPDATE, so a lease renewed meanwhile wins."""
        gone = or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)
        if dead_owners:
            gone = or_(gone, Job.lease_owner.in_(list(dead_owners)))
        return and_(Job.status == "running", gone)

    async def _stale_of(self, job_id: str) -> Any:
        rows = await self._rows(select(Job.lease_owner).where(Job.id == job_id))
        owner = rows[0][0] if rows else None
        return self.stale(utcnow(), [owner] if owner and orphaned(owner) else [])

    # -- the queue ---------------------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        lease_s: float,
        *,
        job_id: str | None = None,
        from_statuses: Sequence[str] = ("queued",),
        or_stale: bool = False,
        queues: Sequence[str] | None = None,
        **values: Any,
    ) -> Job | None:
        """Lease a job to `owner` and mark it running: the oldest queued one, or `job_id` if it is in one of
        `from_statuses` or (with `or_stale`) was left by a runner that is gone — a job resumed in the
        process that asks; None if there is none."""
        now = utcnow()
        stale = await self._stale_of(job_id) if or_stale and job_id is not None else None
        target: Any = job_id
        if job_id is None:
            # a job waits for the jobs made before it on its thread (the LangGraph API's enqueued runs)
            earlier = aliased(Job)
            ahead = exists().where(
                earlier.thread_id == Job.thread_id,
                earlier.status.in_(("queued", "running")),
                earlier.created_at < Job.created_at,
            )
            due = or_(Job.not_before.is_(None), Job.not_before <= now)  # a retry waits out its backoff
            target = (
                select(Job.id)
                .where(Job.status == "queued", due, or_(Job.thread_id.is_(None), ~ahead))
                .where(func.coalesce(Job.queue, Job.workflow).in_(list(queues)) if queues else true())
                .order_by(Job.priority.desc(), Job.created_at, Job.id)
                .limit(1)
            )
            if not self.is_sqlite:  # several workers: never hand one job to two of them
                target = target.with_for_update(skip_locked=True)
            target = target.scalar_subquery()
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(Job)
                .where(
                    Job.id == target,
                    or_(Job.status.in_(from_statuses), stale) if or_stale else Job.status.in_(from_statuses),
                )
                .values(
                    status="running",
                    lease_owner=owner,
                    lease_expires_at=now + dt.timedelta(seconds=lease_s),
                    attempts=Job.attempts + 1,
                    not_before=None,
                    updated_at=now,
                    **values,
                )
                .returning(*Job.__table__.columns)
            )
            row = res.first()
            if row is None:
                return None
            await self._insert_event(conn, row.id, "job_started", {"status": "running"}, now)
        return Job(**row._mapping)

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
        """Put back in the queue every job whose runner is gone (`stale`): its lease expired, or its owner
        `orphaned(owner)` says is a process of this machine that no longer exists."""
        now = utcnow()
        rows = await self._rows(select(Job.lease_owner).where(Job.status == "running").distinct())
        dead = [o for (o,) in rows if o and orphaned is not None and orphaned(o)]
        async with self.sessions.begin() as s:
            res = await s.execute(
                update(Job)
                .where(self.stale(now, dead))
                .values(status="queued", lease_owner=None, lease_expires_at=None, updated_at=now)
                .returning(Job.id)
            )
            ids = list(res.scalars().all())
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

    async def queued(self) -> int:
        rows = await self._rows(select(func.count()).select_from(Job).where(Job.status == "queued"))
        return int(rows[0][0])

    async def variants_of(self, job_id: str) -> list[Job]:
        """The jobs of the variants `job_id` asked for, itself first, in variant order."""
        q = select(Job).where(Job.variant_of == job_id).order_by(Job.variant)
        async with self.sessions() as s:
            return list((await s.scalars(q)).all())

    async def pending_spawns(self, limit: int = 20) -> list[Job]:
        """Jobs that succeeded with variants still to be branched from them (their runner died first)."""
        q = select(Job).where(Job.spawn_pending.is_(True), Job.status == "succeeded").limit(limit)
        async with self.sessions() as s:
            return list((await s.scalars(q)).all())

    async def spawned(self, job_id: str) -> None:
        """Every variant to be branched from this job has been made."""
        async with self.sessions.begin() as s:
            await s.execute(update(Job).where(Job.id == job_id).values(spawn_pending=False))

    async def active_of_key(self, key_id: str) -> int:
        """Jobs made with this key that are queued or running (its running-job quota)."""
        q = (
            select(func.count())
            .select_from(Job)
            .where(Job.key_id == key_id, Job.status.in_(["queued", "running"]))
        )
        return int((await self._rows(q))[0][0])

    # -- who sees which artifact -------------------------------------------------------------------

    async def grant(
        self, tenant: str, refs: Sequence[Any], *, job_id: str | None = None, uploaded: bool = False
    ) -> None:
        """Let `tenant` see these artifacts (an upload; what its jobs made or used); with `job_id`, also
        record that this job refers to them, in the same transaction (so no sweep sees one without the
        other); with `uploaded`, that the tenant uploaded them itself (now). Idempotent."""
        refs = list({r.id: r for r in refs}.values())
        if not refs:
            return
        ids = [r.id for r in refs]
        have = await self._rows(
            select(ArtifactOwner.artifact_id).where(
                ArtifactOwner.tenant == tenant, ArtifactOwner.artifact_id.in_(ids)
            )
        )
        new = set(ids) - {row[0] for row in have}
        unrecorded: list[str] = []
        if job_id is not None:
            rows = await self._rows(
                select(JobArtifact.artifact_id).where(
                    JobArtifact.job_id == job_id, JobArtifact.artifact_id.in_(ids)
                )
            )
            unrecorded = [i for i in ids if i not in {row[0] for row in rows}]
        # a job's new reference re-grants too: a release racing it (another job deleted) cannot leave the
        # job referring to a file its tenant may not see
        grants = refs if uploaded else [r for r in refs if r.id in new or r.id in unrecorded]
        if not grants:
            return
        now = utcnow()
        insert = sqlite_insert if self.is_sqlite else pg_insert
        owners = [
            {
                "artifact_id": r.id,
                "tenant": tenant,
                "bytes": r.bytes,
                "created_at": now,
                "uploaded_at": now if uploaded else None,
            }
            for r in grants
        ]
        stmt = insert(ArtifactOwner).values(owners)
        keys = ["artifact_id", "tenant"]
        # granted meanwhile by another writer: that row stands (an upload marks it uploaded, now)
        stmt = (
            stmt.on_conflict_do_update(index_elements=keys, set_={"uploaded_at": now})
            if uploaded
            else stmt.on_conflict_do_nothing(index_elements=keys)
        )
        async with self.sessions.begin() as s:
            await s.execute(stmt)
            if unrecorded:
                links = [{"job_id": job_id, "artifact_id": i} for i in unrecorded]
                await s.execute(insert(JobArtifact).values(links).on_conflict_do_nothing())

    async def job_artifacts(self, job_id: str) -> list[str]:
        """The artifacts a job's state has referred to (see `grant`)."""
        q = select(JobArtifact.artifact_id).where(JobArtifact.job_id == job_id)
        return sorted(row[0] for row in await self._rows(q))

    async def delete_job(self, job_id: str, statuses: Sequence[str]) -> list[str] | None:
        """Remove the job's row, its events and its artifact references in one transaction, if it is in one
        of `statuses` (checked in the DELETE itself: a resume meanwhile wins); the artifacts it referred
        to, or None if it was not deleted (gone, or in another status)."""
        async with self.sessions.begin() as s:
            res = await s.execute(delete(Job).where(Job.id == job_id, Job.status.in_(list(statuses))))
            if res.rowcount != 1:
                return None
            gone = await s.execute(
                delete(JobArtifact).where(JobArtifact.job_id == job_id).returning(JobArtifact.artifact_id)
            )
            ids = sorted(set(gone.scalars().all()))
            await s.execute(delete(JobEvent).where(JobEvent.job_id == job_id))
        return ids

    async def finished_before(self, cutoff: dt.datetime, statuses: Sequence[str], limit: int) -> list[Job]:
        """Jobs in `statuses` last changed before `cutoff`, oldest first (the sweeper's)."""
        q = (
            select(Job.__table__)
            .where(Job.status.in_(list(statuses)), Job.updated_at < cutoff)
            .order_by(Job.updated_at, Job.id)
            .limit(limit)
        )
        return [Job(**r._mapping) for r in await self._rows(q)]

    async def release(
        self,
        *,
        tenant: str | None = None,
        artifact_ids: Sequence[str] | None = None,
        uploaded_before: dt.datetime | None = None,
        limit: int = 1000,
    ) -> tuple[int, list[str]]:
        """Drop owner rows no job of their tenant refers to any more: those that are not uploads, and the
        uploads made before `uploaded_before` (None: keep every upload). Only `tenant`'s and only of
        `artifact_ids` when given (a deleted job's), else any (the sweeper's, `limit` at a time).
        Returns (rows dropped, the artifacts of those that no owner row and no job refers to any more:
        the files to delete)."""
        owner = ArtifactOwner.__table__
        referred = (
            select(JobArtifact.artifact_id)
            .join(Job, Job.id == JobArtifact.job_id)
            .where(JobArtifact.artifact_id == owner.c.artifact_id, Job.tenant == owner.c.tenant)
        )
        lapsed = owner.c.uploaded_at.is_(None)
        if uploaded_before is not None:
            lapsed = or_(lapsed, owner.c.uploaded_at < uploaded_before)
        cond = [lapsed, ~referred.exists()]
        if tenant is not None:
            cond.append(owner.c.tenant == tenant)
        async with self.sessions.begin() as s:
            if artifact_ids is None:
                found = select(owner.c.artifact_id).where(*cond).distinct().limit(limit)
                candidates = sorted(set((await s.execute(found)).scalars().all()))
            else:
                candidates = sorted(set(artifact_ids))
            if not candidates:
                return 0, []
            res = await s.execute(
                delete(owner).where(owner.c.artifact_id.in_(candidates), *cond).returning(owner.c.tenant)
            )
            dropped = len(res.all())
            still = select(owner.c.artifact_id).where(owner.c.artifact_id.in_(candidates))
            used = select(JobArtifact.artifact_id).where(JobArtifact.artifact_id.in_(candidates))
            kept = set((await s.execute(still.union(used))).scalars().all())
        return dropped, [a for a in candidates if a not in kept]

    async def storage(self) -> dict[str, dict[str, int]]:
        """Per tenant: how many stored files it sees and their bytes (a file two tenants share counts for
        both)."""
        q = select(
            ArtifactOwner.tenant, func.count(), func.coalesce(func.sum(ArtifactOwner.bytes), 0)
        ).group_by(ArtifactOwner.tenant)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return {tenant: {"artifacts": int(n), "bytes": int(b)} for tenant, n, b in sorted(rows)}

    async def sees_artifact(self, tenant: str, artifact_id: str) -> bool:
        rows = await self._rows(
            select(ArtifactOwner.artifact_id).where(
                ArtifactOwner.tenant == tenant, ArtifactOwner.artifact_id == artifact_id
            )
        )
        return bool(rows)

    # -- idempotent requests -----------------------------------------------------------------------

    async def first_response(
        self, owner: str, route: str, key: str, since: dt.datetime
    ) -> IdempotentResponse | None:
        q = select(IdempotentResponse.__table__).where(
            IdempotentResponse.key_id == owner,
            IdempotentResponse.route == route,
            IdempotentResponse.idempotency_key == key,
            IdempotentResponse.created_at >= since,
        )
        rows = await self._rows(q)
        return IdempotentResponse(**rows[0]._mapping) if rows else None

    async def keep_response(
        self, row: IdempotentResponse, *, expired_before: dt.datetime, abandoned_before: dt.datetime
    ) -> bool:
        """Store the first response to a request, or its reservation (over an expired one with the same
        key, or a reservation left unanswered since `abandoned_before`); False if another copy of the
        request got there first."""
        same = and_(
            IdempotentResponse.key_id == row.key_id,
            IdempotentResponse.route == row.route,
            IdempotentResponse.idempotency_key == row.idempotency_key,
        )
        stale = or_(
            IdempotentResponse.created_at < expired_before,
            and_(IdempotentResponse.status_code == 0, IdempotentResponse.created_at < abandoned_before),
        )
        async with self.sessions.begin() as s:
            await s.execute(delete(IdempotentResponse).where(same, stale))
        try:
            async with self.sessions.begin() as s:
                s.add(row)
        except IntegrityError:
            return False
        return True

    def _response(self, key_id: str, route: str, key: str) -> Any:
        return and_(
            IdempotentResponse.key_id == key_id,
            IdempotentResponse.route == route,
            IdempotentResponse.idempotency_key == key,
        )

    async def complete_response(self, key_id: str, route: str, key: str, status: int, body: Any) -> None:
        """The answer to a reserved request (see `keep_response`)."""
        async with self.sessions.begin() as s:
            await s.execute(
                update(IdempotentResponse)
                .where(self._response(key_id, route, key))
                .values(status_code=status, body=body)
            )

    async def forget_response(self, key_id: str, route: str, key: str) -> None:
        """Drop a reservation whose request failed: nothing was done, so a repeat runs again."""
        async with self.sessions.begin() as s:
            await s.execute(
                delete(IdempotentResponse).where(
                    self._response(key_id, route, key), IdempotentResponse.status_code == 0
                )
            )

    async def purge_responses(self, before: dt.datetime) -> int:
        """Forget the answers to idempotent requests made before `before` (the sweeper's)."""
        async with self.sessions.begin() as s:
            res = await s.execute(delete(IdempotentResponse).where(IdempotentResponse.created_at < before))
        return int(res.rowcount or 0)

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
        *,
        owner: str | None = None,
    ) -> JobEvent:
        """A node boundary in one transaction: the job's new progress, its event and the node's timing;
        with `owner`, the job's row only while that runner holds its lease. Core statements, not the ORM:
        a job writes a few of these per node."""
        now = utcnow()
        cond = [Job.id == job_id] + ([Job.lease_owner == owner] if owner is not None else [])
        async with self.engine.begin() as conn:
            await conn.execute(update(Job).where(*cond).values(**values, updated_at=now))
            ev_id = await self._insert_event(conn, job_id, type_, data, now)
            if timing is not None:
                await conn.execute(
                    insert(NodeTiming).values(
                        workflow=timing[0], node=timing[1], seconds=timing[2], created_at=now
                    )
                )
        return JobEvent(id=ev_id, job_id=job_id, type=type_, data=data, created_at=now)

    @staticmethod
    async def _insert_event(
        conn: Any, job_id: str, type_: str, data: dict[str, Any], now: dt.datetime
    ) -> int:
        res = await conn.execute(
            insert(JobEvent)
            .values(job_id=job_id, type=type_, data=data, created_at=now)
            .returning(JobEvent.id)
        )
        return int(res.scalar_one())

    async def settle(
        self, job_id: str, owner: str, values: dict[str, Any], type_: str, data: dict[str, Any]
    ) -> bool:
        """A job's end (or its return to the queue) in one transaction: its row, only while `owner` holds
        its lease, and then its event; False (and no event) if the lease was lost."""
        now = utcnow()
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(Job).where(Job.id == job_id, Job.lease_owner == owner).values(**values, updated_at=now)
            )
            if res.rowcount != 1:
                return False
            await self._insert_event(conn, job_id, type_, data, now)
        return True

    async def add_event(self, job_id: str, type_: str, data: dict[str, Any]) -> JobEvent:
        now = utcnow()
        async with self.engine.begin() as conn:
            ev_id = await self._insert_event(conn, job_id, type_, data, now)
        return JobEvent(id=ev_id, job_id=job_id, type=type_, data=data, created_at=now)

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

    # -- threads (service/threads.py) ------------------------------------------------------------------

    async def create_thread(self, thread: Thread) -> bool:
        """Store a new thread; False if one with its id exists."""
        try:
            async with self.sessions.begin() as s:
                s.add(thread)
        except IntegrityError:
            return False
        return True

    async def thread(self, thread_id: str) -> Thread | None:
        async with self.sessions() as s:
            return await s.get(Thread, thread_id)

    async def update_thread(self, thread_id: str, **values: Any) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                update(Thread).where(Thread.id == thread_id).values(**values, updated_at=utcnow())
            )

    async def delete_thread(self, thread_id: str) -> None:
        async with self.sessions.begin() as s:
            await s.execute(delete(Thread).where(Thread.id == thread_id))

    async def thread_jobs(self, thread_id: str) -> list[Job]:
        """The jobs of a thread, oldest first: those run on it, and the job whose own thread it is."""
        q = (
            select(Job)
            .where(or_(Job.thread_id == thread_id, and_(Job.id == thread_id, Job.thread_id.is_(None))))
            .order_by(Job.created_at, Job.id)
        )
        async with self.sessions() as s:
            return list((await s.scalars(q)).all())

    async def threads(self, tenant: str | None, graph_id: str | None, limit: int) -> list[Thread]:
        """Newest first (by last change); only `tenant`'s unless it is None."""
        q = select(Thread)
        if tenant is not None:
            q = q.where(Thread.tenant == tenant)
        if graph_id is not None:
            q = q.where(Thread.graph_id == graph_id)
        async with self.sessions() as s:
            return list((await s.scalars(q.order_by(Thread.updated_at.desc()).limit(limit))).all())

    async def lone_jobs(self, tenant: str | None, workflow: str | None, limit: int) -> list[Job]:
        """Jobs on no thread (each its own), newest first."""
        q = select(Job).where(Job.thread_id.is_(None))
        if tenant is not None:
            q = q.where(Job.tenant == tenant)
        if workflow is not None:
            q = q.where(Job.workflow == workflow)
        q = q.where(~exists().where(Thread.id == Job.id))
        async with self.sessions() as s:
            return list((await s.scalars(q.order_by(Job.created_at.desc()).limit(limit))).all())


def _sqlite_reader(engine: AsyncEngine) -> Engine | None:
    """A plain (pysqlite) engine over the same file for JobStore._rows; None for an in-memory database."""
    if engine.url.database in (None, "", ":memory:"):
        return None
    return create_engine(
        engine.url.set(drivername="sqlite"),
        poolclass=StaticPool,  # one connection, used only from the event loop's thread
        connect_args={"check_same_thread": False, "timeout": 0},  # locked: fall back, don't wait
    )
