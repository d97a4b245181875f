"""Artifacts every machine can reach: the shared backend behind the local `FileArtifactStore`.

`ADGRAPH_ARTIFACTS_URL` picks it (`open_artifact_store`, the one place a store is built from settings):

- unset, `file:///abs/path` or a plain path: no remote; the local directory is the store (as always).
- `s3://bucket/optional/prefix`: an S3-compatible object store through obstore (`pip install
  'adgraph[shared-artifacts]'`); endpoint and region from ADGRAPH_S3_ENDPOINT_URL / ADGRAPH_S3_REGION,
  credentials from the standard AWS_* environment (or the instance's / pod's role).
- `postgresql://…`: rows of a table `artifact_blobs` the backend creates itself (psycopg 3).

With a remote, the local directory is a cache of it: writes go to the remote first, then to the local
file (write-through; an id the remote has is not sent again); reads take the local file, else download it
into the local directory atomically (read-through), checking the bytes against their id.

Remote keys are artifact ids (64 hex digits, validated before they get here): on S3
`<prefix>/ab/cdef…` with the MIME type as its Content-Type, in PostgreSQL the row's primary key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from checkpoints.artifacts import FileArtifactStore
from kernel.errors import AdgraphError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

UNAVAILABLE = "ARTIFACT_STORE_UNAVAILABLE"
S3_RETRIES = 3
"""Tries after the first for a request that failed to connect, timed out or got a 5xx; then 503."""
S3_RETRY_TIMEOUT = timedelta(seconds=20)
"""No retry starts later than this after the first try (obstore's default is 3 minutes)."""
S3_CONNECT_TIMEOUT = timedelta(seconds=5)
S3_TIMEOUT = timedelta(seconds=120)
"""One request, body included (a 25 MB upload at 2 Mbit/s still fits)."""
PG_CONNECT_TIMEOUT_S = 5
PG_IDLE_CONNECTIONS = 4
"""Connections kept open for the next call; more are opened while many threads call at once."""


class BlobBackend(Protocol):
    """Where artifacts live when every machine must reach them. Keys are artifact ids (validated by the
    caller); every method is blocking (callers run it off the event loop) and raises
    ARTIFACT_STORE_UNAVAILABLE when the backend cannot be reached or refuses."""

    url: str
    """What it is, for messages (no password)."""

    def put(self, key: str, data: bytes, mime: str) -> bool:
        """Store `data` unless `key` is already there (content-addressed: the same bytes); True if sent."""
        ...

    def get(self, key: str) -> tuple[bytes, str] | None:
        """(bytes, MIME type), or None when there is no such key."""
        ...

    def find(self, key: str) -> str | None:
        """The key's MIME type, or None when there is no such key."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str, *, unless_written_after: float | None = None) -> bool:
        """Remove it (unless written, or written again, after that time.time()); True if removed."""
        ...

    def close(self) -> None: ...


def _is_postgres(scheme: str) -> bool:
    return scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+")  # +psycopg, +asyncpg


def _unavailable(url: str, action: str, error: BaseException) -> AdgraphError:
    log.warning("artifact store %s: %s failed: %r", url, action, error)
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return AdgraphError(
        UNAVAILABLE, f"the artifact store {url} could not {action}: {reason}", store=url.split(":", 1)[0]
    )


def redact(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


# -- S3 ------------------------------------------------------------------------------------------------


class S3Blobs:
    """Objects in an S3-compatible bucket (AWS, MinIO, R2, Ceph, moto) through obstore's blocking calls."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        retries: int = S3_RETRIES,
        retry_timeout: timedelta = S3_RETRY_TIMEOUT,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"{url!r}: an S3 artifact store is s3://bucket[/prefix]")
        try:
            import obstore
            from obstore.store import S3Store
        except ImportError as e:
            raise AdgraphError(
                UNAVAILABLE,
                f"ADGRAPH_ARTIFACTS_URL={url} needs obstore: pip install 'adgraph[shared-artifacts]'",
                store="s3",
            ) from e
        self._obstore = obstore
        self.url = url
        self.prefix = parts.path.strip("/")
        config: dict[str, Any] = {}
        if endpoint_url:
            config["endpoint"] = endpoint_url
        if region:
            config["region"] = region
        if access_key_id and secret_access_key:  # else the AWS_* environment or the instance's role
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        client: dict[str, Any] = {"connect_timeout": S3_CONNECT_TIMEOUT, "timeout": S3_TIMEOUT}
        if endpoint_url and endpoint_url.startswith("http://"):
            client["allow_http"] = True  # MinIO or moto on a private network
        # what is not set here obstore reads from the AWS_* environment (keys, session token, web identity)
        self.store = S3Store(
            parts.netloc,
            prefix=self.prefix or None,
            config=config,
            client_options=client,
            retry_config={"max_retries": retries, "retry_timeout": retry_timeout},
        )

    @staticmethod
    def _key(key: str) -> str:
        return f"{key[:2]}/{key[2:]}"

    @contextlib.contextmanager
    def _calling(self, action: str) -> Iterator[None]:
        try:
            yield
        except AdgraphError:
            raise
        except Exception as e:  # a FileNotFoundError that got here is the bucket's (NoSuchBucket)
            raise _unavailable(self.url, action, e) from e

    def _head(self, key: str, action: str) -> dict[str, Any] | None:
        with self._calling(action):
            try:
                return dict(self._obstore.head(self.store, self._key(key)))
            except FileNotFoundError as e:
                if "NoSuchBucket" in str(e):
                    raise
                return None

    def put(self, key: str, data: bytes, mime: str) -> bool:
        if self._head(key, "store an artifact") is not None:
            return False
        with self._calling("store an artifact"):
            self._obstore.put(self.store, self._key(key), data, attributes={"Content-Type": mime})
        return True

    def get(self, key: str) -> tuple[bytes, str] | None:
        with self._calling("read an artifact"):
            try:
                got = self._obstore.get(self.store, self._key(key))
            except FileNotFoundError as e:
                if "NoSuchBucket" in str(e):
                    raise
                return None
            data = bytes(got.bytes())
            mime = str(got.attributes.get("Content-Type") or "application/octet-stream")
        return data, mime

    def find(self, key: str) -> str | None:
        got = self.get(key)  # HEAD gives no Content-Type in obstore; the caller keeps the bytes anyway
        return got[1] if got is not None else None

    def exists(self, key: str) -> bool:
        return self._head(key, "look up an artifact") is not None

    def delete(self, key: str, *, unless_written_after: float | None = None) -> bool:
        meta = self._head(key, "delete an artifact")
        if meta is None:
            return False
        if unless_written_after is not None and meta["last_modified"].timestamp() > unless_written_after:
            return False
        with self._calling("delete an artifact"):
            self._obstore.delete(self.store, self._key(key))
        return True

    def close(self) -> None:
        pass  # obstore's client holds no resource that needs closing


# -- PostgreSQL ------------------------------------------------------------------------------------------

TABLE = "artifact_blobs"
_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id text PRIMARY KEY,
    mime text NOT NULL,
    size bigint NOT NULL,
    data bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)"""


class PostgresBlobs:
    """Rows of `artifact_blobs` (created here, in the first schema of the connection's search_path), for
    deployments with a PostgreSQL server but no object store. `created_at` is refreshed when the same bytes
    are written again, so a delete racing that writer keeps the row (as a file's mtime does)."""

    def __init__(self, url: str, *, connect_timeout_s: float = PG_CONNECT_TIMEOUT_S) -> None:
        scheme, sep, rest = url.partition("://")
        if not _is_postgres(scheme.lower()) or not sep:
            raise ValueError(f"{url!r}: a PostgreSQL artifact store is postgresql://…")
        self.url = redact(url)
        self._conninfo = "postgresql://" + rest  # a SQLAlchemy-style driver suffix is not libpq's
        self._connect_timeout = max(1, round(connect_timeout_s))
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._ready = False

    def _connect(self) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=self._connect_timeout)

    @contextlib.contextmanager
    def _conn(self, action: str) -> Iterator[psycopg.Connection]:
        """A connection (an idle one, else a new one), given back unless it failed. A failure on an idle
        connection (the server restarted since) is tried once more on a new one by the caller's `_run`."""
        import psycopg

        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            conn = conn or self._connect()
        except psycopg.Error as e:
            raise _unavailable(self.url, action, e) from e
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        with self._lock:
            if len(self._idle) < PG_IDLE_CONNECTIONS and not conn.closed:
                self._idle.append(conn)
                return
        conn.close()

    def _run(self, action: str, work: Any) -> Any:
        import psycopg

        for attempt in (1, 2):
            try:
                with self._conn(action) as conn:
                    if not self._ready:
                        self._create(conn)
                    return work(conn)
            except psycopg.OperationalError as e:  # the connection broke: once more on a new one
                if attempt == 2:
                    raise _unavailable(self.url, action, e) from e
            except psycopg.Error as e:
                raise _unavailable(self.url, action, e) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _create(self, conn: psycopg.Connection) -> None:
        import psycopg

        # another process may create it at the same moment
        with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
            conn.execute(_CREATE)
        self._ready = True

    def put(self, key: str, data: bytes, mime: str) -> bool:
        def work(conn: psycopg.Connection) -> bool:
            touched = conn.execute(f"UPDATE {TABLE} SET created_at = now() WHERE id = %s", (key,))
            if touched.rowcount:
                return False
            inserted = conn.execute(
                f"INSERT INTO {TABLE} (id, mime, size, data) VALUES (%s, %s, %s, %b) "
                "ON CONFLICT (id) DO NOTHING",
                (key, mime, len(data), data),
            )
            return inserted.rowcount == 1

        return self._run("store an artifact", work)

    def get(self, key: str) -> tuple[bytes, str] | None:
        def work(conn: psycopg.Connection) -> tuple[bytes, str] | None:
            row = conn.execute(
                f"SELECT data, mime FROM {TABLE} WHERE id = %s", (key,), binary=True
            ).fetchone()
            return (bytes(row[0]), row[1]) if row is not None else None

        return self._run("read an artifact", work)

    def find(self, key: str) -> str | None:
        def work(conn: psycopg.Connection) -> str | None:
            row = conn.execute(f"SELECT mime FROM {TABLE} WHERE id = %s", (key,)).fetchone()
            return row[0] if row is not None else None

        return self._run("look up an artifact", work)

    def exists(self, key: str) -> bool:
        return self.find(key) is not None

    def delete(self, key: str, *, unless_written_after: float | None = None) -> bool:
        def work(conn: psycopg.Connection) -> bool:
            if unless_written_after is None:
                cur = conn.execute(f"DELETE FROM {TABLE} WHERE id = %s", (key,))
            else:
                when = dt.datetime.fromtimestamp(unless_written_after, dt.UTC)
                cur = conn.execute(f"DELETE FROM {TABLE} WHERE id = %s AND created_at <= %s", (key, when))
            return cur.rowcount == 1

        return self._run("delete an artifact", work)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# -- the one place a store is built from settings -----------------------------------------------------------


class ArtifactSettings(Protocol):
    """What `open_artifact_store` reads (service.settings.Settings has it)."""

    artifacts_url: str | None
    s3_endpoint_url: str | None
    s3_region: str | None
    s3_access_key_id: str | None
    s3_secret_access_key: Any
    """A pydantic SecretStr, or None."""

    @property
    def artifacts_dir(self) -> Path: ...


_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


def open_remote(url: str | None, **s3: Any) -> BlobBackend | None:
    """The shared backend an ADGRAPH_ARTIFACTS_URL names; None for a local directory (unset, file://, a
    path). `s3`: S3Blobs' options, for an s3:// URL."""
    m = _SCHEME.match(url or "")
    scheme = m.group(1).lower() if m else None
    if url is None or scheme in (None, "file"):
        return None
    if scheme == "s3":
        return S3Blobs(url, **s3)
    if _is_postgres(scheme):
        return PostgresBlobs(url)
    raise ValueError(f"ADGRAPH_ARTIFACTS_URL={redact(url)}: expected file://, s3:// or postgresql://")


def open_artifact_store(settings: ArtifactSettings, **kw: Any) -> FileArtifactStore:
    """The artifact store `settings` ask for: the local directory `settings.artifacts_dir`, backed by the
    remote that ADGRAPH_ARTIFACTS_URL names, if it names one. `kw` goes to FileArtifactStore."""
    secret = settings.s3_secret_access_key
    remote = open_remote(
        settings.artifacts_url,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
    )
    return FileArtifactStore(settings.artifacts_dir, remote=remote, **kw)
