"""The service's own tables beside the checkpoints: jobs (the queue), their events, node timings.

SQLAlchemy 2 async; SQLite (aiosqlite) by default, PostgreSQL (asyncpg) by URL. The schema is created and
upgraded by Alembic (`service/migrations`) when the app starts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    TypeDecorator,
    event,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    nodes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    parent_job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    parent_checkpoint_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    active_checkpoint_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    tenant: Mapped[str] = mapped_column(String(64), default="local")
    """Whose job it is: only that tenant (and an admin key) sees it."""
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The API key that made it (None: the CLI, or before keys existed); its running-job quota counts it."""
    thread_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The thread (a line of jobs, `Thread`) it was run on; None: its own thread, whose id is the job's.
    The jobs of one thread run one after another, in the order they were made."""
    priority: Mapped[int] = mapped_column(Integer, default=0)
    """Higher runs first (-100..100); among equals, the older first."""
    queue: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The queue workers take it from (`adgraph worker --queues`); None: its workflow's name."""
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """A retry waits until then (backoff after a transient failure)."""
    attempt_log: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Each attempt that ended: attempt, worker, started_at, ended_at, outcome, error code."""
    batch_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The batch (`Batch`, a catalog) it was made in; None: a job of its own."""
    batch_row: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Its row in that batch, from 1."""
    variant_of: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The job that asked for variants (copies x sizes) this one is one of; itself for variant 0."""
    variant: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Which of them, from 0 (`service.variants`)."""
    spawn_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    """Variants are branched from this job once it has succeeded, and have not all been made yet."""

    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_status_priority", "status", "priority", "created_at"),
        Index("ix_jobs_thread_created", "thread_id", "created_at"),
        Index("ix_jobs_tenant_created", "tenant", "created_at"),
        Index("ix_jobs_key_status", "key_id", "status"),
        Index("ix_jobs_batch_row", "batch_id", "batch_row"),
        Index("ix_jobs_variant", "variant_of", "variant", unique=True),
        Index("ix_jobs_spawn_pending", "spawn_pending", "status"),
    )


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Thread(Base):
    """A line of jobs made one after another on the same work, as the LangGraph API's thread: its first
    job, the branches forked from its checkpoints, the runs that resumed it. A job made by another door
    has no row: it is a thread of its own, with the job's id."""

    __tablename__ = "threads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    graph_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The workflow of its jobs, once known (given at creation, or by its first run)."""
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The client's own metadata."""
    staged: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Forks staged by `update_state` and not run yet: {checkpoint_id, job_id, source, values, as_node}."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_threads_tenant_updated", "tenant", "updated_at"),)


class NodeTiming(Base):
    """How long each node took, for ETAs."""

    __tablename__ = "node_timings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow: Mapped[str] = mapped_column(String(32))
    node: Mapped[str] = mapped_column(String(32))
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_node_timings_wf_node", "workflow", "node", "id"),)


class ApiKey(Base):
    """A key a client sends (Authorization: Bearer …, or x-api-key); only its HMAC digest is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    rate: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """Requests allowed per window, in the `limits` notation ("60/minute"); None: the server's default."""
    max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Jobs of this key queued or running at once; None: no quota."""
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ArtifactOwner(Base):
    """A tenant that may see an artifact: it uploaded it, or one of its jobs made or used it. Identical
    bytes from two tenants are one file on disk and two rows here."""

    __tablename__ = "artifact_owners"

    artifact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    uploaded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the tenant last uploaded these bytes itself (None: it sees them only through its jobs). An
    upload outlives the jobs that used it; ADGRAPH_ARTIFACT_TTL_DAYS counts from here."""


class JobArtifact(Base):
    """A file a job's state refers to (its input, what its nodes made, what a branch was seeded with):
    deleting the job deletes the files no other job and no upload holds."""

    __tablename__ = "job_artifacts"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    artifact_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class IdempotentResponse(Base):
    """The first answer to a request sent with an Idempotency-Key, replayed for a repeat (24 h)."""

    __tablename__ = "idempotent_responses"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Batch(Base):
    """Many jobs of one workflow made by one request (a catalog: one ad per row); its status, counts and
    progress are its jobs' (`service.batches`)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    workflow: Mapped[str] = mapped_column(String(32))
    rows: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_batches_tenant_created", "tenant", "created_at"),)


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a `sqlite:///…` or `postgresql://…` setting."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, pre_ping: bool = True) -> AsyncEngine:
    """`pre_ping`: test each PostgreSQL connection as it is taken from the pool (a round trip), so one that
    a database restart broke is replaced before it fails a request."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(async_url(url), connect_args={"timeout": 15})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=15000")
            cur.close()

        return engine
    return create_async_engine(async_url(url), pool_size=10, max_overflow=20, pool_pre_ping=pre_ping)


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))

    def upgrade(connection: Any) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)
