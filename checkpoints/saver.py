"""Checkpointer factory: SQLite by default, PostgreSQL by URL; one serializer that only rebuilds our types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from agents import provenance, site_schemas
from agents import schemas as agent_schemas
from kernel import models

# Checkpoints are deserialized only into these classes: a tampered database cannot name others.
STATE_TYPES: tuple[type, ...] = (
    models.ArtifactRef,
    models.Box,
    models.AdCopy,
    models.Placement,
    models.Region,
    models.SceneAnalysis,
    agent_schemas.TextBlock,
    agent_schemas.TextPlan,
    agent_schemas.BlockStyle,
    agent_schemas.Scrim,
    agent_schemas.ButtonStyle,
    agent_schemas.TextDesign,
    site_schemas.Profile,
    site_schemas.SiteSection,
    site_schemas.SitePage,
    site_schemas.SitePlan,
    site_schemas.Palette,
    site_schemas.TypeScale,
    site_schemas.DesignSystem,
    site_schemas.SiteManifest,
    site_schemas.SiteChecks,
    provenance.PartProvenance,
)


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[BaseCheckpointSaver]:
    """Open a saver for `url`: `sqlite:///path/to/file.db` or `postgresql://…`."""
    if url.startswith("sqlite:///"):
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL is durable across a process kill (only an OS crash can lose the last commit).
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=5000")
            saver = AsyncSqliteSaver(conn, serde=serializer())
            await saver.setup()
            yield saver
        finally:
            await conn.close()
    elif url.startswith(("postgresql://", "postgres://")):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        # A pool, so concurrent jobs and API reads don't queue on one connection. prepare_threshold=None
        # keeps it working behind PgBouncer.
        kwargs = {"autocommit": True, "row_factory": dict_row, "prepare_threshold": None}
        async with AsyncConnectionPool(url, min_size=1, max_size=8, kwargs=kwargs, open=False) as pool:
            saver = AsyncPostgresSaver(pool, serde=serializer())
            await saver.setup()
            yield saver
    else:
        raise ValueError(f"unsupported checkpoint URL {url!r}: use sqlite:///FILE or postgresql://…")
