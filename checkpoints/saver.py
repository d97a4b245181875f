"""Checkpointer factory: SQLite by default, PostgreSQL by URL; one serializer that only rebuilds our types."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from kernel import models

# Checkpoints written before the shared types moved to `kernel` (adgraph 0.1 up to commit 0ebc136) name
# their classes `graph.models.X`; that module is an alias of `kernel.models` for reading them.
_LEGACY_MODULES = {"graph.models": models}


def serializer(state_types: Sequence[type]) -> JsonPlusSerializer:
    """A serializer that rebuilds only `state_types` (a tampered database cannot name other classes)."""
    allowed: list[type | tuple[str, str]] = list(state_types)
    for old, module in _LEGACY_MODULES.items():
        sys.modules.setdefault(old, module)
        allowed += [(old, t.__name__) for t in state_types if t.__module__ == module.__name__]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


@asynccontextmanager
async def open_checkpointer(url: str, state_types: Sequence[type]) -> AsyncIterator[BaseCheckpointSaver]:
    """Open a saver for `url` (`sqlite:///path/to/file.db` or `postgresql://…`) whose checkpoints may
    hold instances of `state_types` (the workflows' state classes, from the service's registry)."""
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
            saver = AsyncSqliteSaver(conn, serde=serializer(state_types))
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
            saver = AsyncPostgresSaver(pool, serde=serializer(state_types))
            await saver.setup()
            yield saver
    else:
        raise ValueError(f"unsupported checkpoint URL {url!r}: use sqlite:///FILE or postgresql://…")
