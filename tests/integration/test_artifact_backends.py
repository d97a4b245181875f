"""Artifacts shared by machines (ADGRAPH_ARTIFACTS_URL), as the machines sharing them see it.

One contract over three real backends: a local directory (file://, the default's code), S3 (moto's real
S3 HTTP server on a loopback port, through obstore) and PostgreSQL (127.0.0.1:5432, database `test`, in a
schema of its own dropped afterwards). "Machine A" and "machine B" are two stores built from the same
URL by `open_artifact_store`, each with its own (empty) data_dir: what A writes, B reads.
"""

from __future__ import annotations

import io
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image
from psycopg import sql

from checkpoints.artifacts import FileArtifactStore
from checkpoints.blobs import PostgresBlobs, S3Blobs, open_artifact_store
from kernel.errors import AdgraphError
from kernel.models import ArtifactRef
from service.accounts import Accounts
from service.app import create_app
from service.db import make_engine, migrate
from service.settings import Settings
from service.store import JobStore
from tests.integration.api_support import postgres_reachable
from tests.support import PHOTOS

pytestmark = pytest.mark.integration

BUCKET = "adgraph-artifacts"
PG_TEST = "postgresql://postgres@127.0.0.1:5432/test"
MISSING = "0" * 64


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo(seed: int | None = None) -> Image.Image:
    """An image no other test stores (random pixels): its id is new to every backend."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


class Recording:
    """A remote that records every call made to it (and passes it on)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kw)

        return call


# -- the servers ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 over HTTP on a free loopback port, with a versioned bucket (each upload is a version)."""
    import boto3

    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")  # what obstore and boto3 read; moto takes any
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        try:
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            s3.create_bucket(Bucket=BUCKET)
            s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
            yield endpoint
        finally:
            server.stop()


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    """A schema of this run's own in database `test`, dropped afterwards; yields the store's URL."""
    if not postgres_reachable():
        pytest.skip("no PostgreSQL server at 127.0.0.1:5432 (trust auth, user postgres)")
    schema = f"adgraph_blobs_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_TEST, autocommit=True, connect_timeout=3) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL database `test` at 127.0.0.1:5432 is unreachable: {e}")
    url = f"{PG_TEST}?options={quote(f'-csearch_path={schema}')}"
    # The table as the backend creates it, then a trigger that logs every row sent to it: an honest
    # count of uploads (an INSERT that carries the bytes, even one that loses to ON CONFLICT).
    blobs = PostgresBlobs(url)
    assert not blobs.exists(MISSING)
    blobs.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE upload_log (id text NOT NULL)")
        conn.execute(
            "CREATE FUNCTION log_upload() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO upload_log VALUES (NEW.id); RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER log_upload BEFORE INSERT ON artifact_blobs "
            "FOR EACH ROW EXECUTE FUNCTION log_upload()"
        )
    try:
        yield url
    finally:
        with psycopg.connect(PG_TEST, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# -- the backends, as machines see them -------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    url: str
    tmp: Path
    s3_endpoint: str | None = None
    uploads: Callable[[str], int] = lambda artifact_id: 0
    """How many times the bytes of that artifact went to the shared store."""
    opened: list[FileArtifactStore] = field(default_factory=list)

    def settings(self, data_dir: Path, **kw: Any) -> Settings:
        return Settings(
            data_dir=data_dir,
            artifacts_url=self.url,
            s3_endpoint_url=self.s3_endpoint,
            s3_region="us-east-1" if self.s3_endpoint else None,
            database_url=None,
            checkpoint_url=None,
            **kw,
        )

    def machine(self) -> FileArtifactStore:
        """Another machine: its own, empty data_dir, the same ADGRAPH_ARTIFACTS_URL."""
        data_dir = self.tmp / f"machine-{len(self.opened)}"
        store = open_artifact_store(self.settings(data_dir))
        self.opened.append(store)
        return store


@pytest.fixture(params=["local", "s3", "postgresql"])
def backend(request, tmp_path) -> Iterator[Backend]:
    if request.param == "local":
        shared = tmp_path / "shared"
        b = Backend("local", shared.as_uri(), tmp_path)  # file:///…: one directory both machines mount

        def local_uploads(artifact_id: str) -> int:
            return len(list(shared.glob(f"{artifact_id[:2]}/{artifact_id[2:]}.*")))

        b.uploads = local_uploads
    elif request.param == "s3":
        import boto3

        endpoint = request.getfixturevalue("s3_endpoint")
        prefix = f"run-{uuid.uuid4().hex[:8]}/artifacts"
        b = Backend("s3", f"s3://{BUCKET}/{prefix}", tmp_path, s3_endpoint=endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

        def s3_uploads(artifact_id: str) -> int:
            key = f"{prefix}/{artifact_id[:2]}/{artifact_id[2:]}"
            versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", [])
            return len([v for v in versions if v["Key"] == key])

        b.uploads = s3_uploads
    else:
        url = request.getfixturevalue("pg_schema")
        b = Backend("postgresql", url, tmp_path)

        def pg_uploads(artifact_id: str) -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                return conn.execute(
                    "SELECT count(*) FROM upload_log WHERE id = %s", (artifact_id,)
                ).fetchone()[0]

        b.uploads = pg_uploads
    yield b
    for store in b.opened:
        store.close()


# -- the contract ---------------------------------------------------------------------------------------


def test_an_image_put_on_one_machine_is_read_on_another(backend: Backend) -> None:
    a, b = backend.machine(), backend.machine()
    image = photo()
    ref = a.put_image_sync(image)
    if backend.name != "local":  # (a file:// store is one directory both machines mount)
        assert files_under(b.root) == []  # B has nothing of its own yet

    found = b.find(ref.id)  # what the API does before serving a download
    assert (found.id, found.mime, found.bytes, found.width, found.height) == (
        ref.id,
        "image/png",
        ref.bytes,
        64,
        48,
    )
    on_b = b.local_path_sync(found)
    assert on_b.read_bytes() == a.local_path_sync(ref).read_bytes()
    assert on_b.is_relative_to(b.root)
    assert np.array_equal(np.asarray(b.open_image_sync(ref)), np.asarray(image))
    # a third machine that never asked find() reads the pixels straight away
    c = backend.machine()
    assert np.array_equal(np.asarray(c.open_image_sync(ref)), np.asarray(image))


async def test_bytes_written_by_one_machine_are_read_by_another_off_the_event_loop(backend: Backend) -> None:
    a, b = backend.machine(), backend.machine()
    page = f"<!doctype html><title>{uuid.uuid4()}</title>".encode()
    ref = await a.put_bytes(page, "text/html")
    assert await b.read_bytes(ref) == page
    assert (await b.local_path(ref)).read_bytes() == page
    assert b.find(ref.id).mime == "text/html"


def test_a_missing_artifact_is_not_found_on_every_machine(backend: Backend) -> None:
    a = backend.machine()
    for call in (
        lambda: a.find(MISSING),
        lambda: a.local_path_sync(MISSING, "image/png"),
        lambda: a.open_image_sync(ArtifactRef(id=MISSING, mime="image/png", bytes=1)),
    ):
        with pytest.raises(AdgraphError) as e:
            call()
        assert e.value.code == "ARTIFACT_NOT_FOUND"
        assert e.value.http_status == 404


def test_a_malformed_id_is_invalid_input_and_never_reaches_the_shared_store(backend: Backend) -> None:
    a = backend.machine()
    recording = Recording(a.remote) if a.remote is not None else None
    a.remote = recording
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/x", "%2e%2e"):
        for call, args in ((a.find, ()), (a.local_path_sync, ("image/png",)), (a.delete_sync, ())):
            with pytest.raises(AdgraphError) as e:
                call(bad, *args)
            assert e.value.code == "INVALID_INPUT"
    assert recording is None or recording.calls == []
    assert files_under(a.root) == []


def test_the_same_bytes_put_twice_are_uploaded_once(backend: Backend) -> None:
    a, b = backend.machine(), backend.machine()
    data = png(photo())
    first = a.put_bytes_sync(data, "image/png", 64, 48)
    again = a.put_bytes_sync(data, "image/png", 64, 48)  # the same machine
    other = b.put_bytes_sync(data, "image/png", 64, 48)  # another machine, which has no copy of its own
    assert first == again == other
    assert backend.uploads(first.id) == 1
    assert b.local_path_sync(first).read_bytes() == data


def test_a_delete_removes_it_for_every_machine_unless_written_again_since(backend: Backend) -> None:
    a, b = backend.machine(), backend.machine()
    kept = a.put_bytes_sync(png(photo()), "image/png")
    # "written after" a minute ago: a job may have just made these bytes, so they stay
    assert not a.delete_sync(kept.id, unless_written_after=time.time() - 60)
    assert b.find(kept.id).id == kept.id

    gone = a.put_bytes_sync(png(photo()), "image/png")
    b.find(gone.id)  # B has read it (and keeps a copy in its cache)
    assert a.delete_sync(gone.id)
    with pytest.raises(AdgraphError) as e:
        backend.machine().find(gone.id)
    assert e.value.code == "ARTIFACT_NOT_FOUND"
    assert not b.contains_sync(gone)  # B's step cache no longer takes it as there


# -- the shared store down ------------------------------------------------------------------------------


@pytest.fixture(params=["s3", "postgresql"])
def down(request, tmp_path) -> Iterator[FileArtifactStore]:
    """A machine whose shared store does not answer (a loopback port nobody listens on)."""
    port = closed_port()
    if request.param == "s3":
        remote: Any = S3Blobs(
            f"s3://{BUCKET}/x", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1", retries=1
        )
    else:
        remote = PostgresBlobs(f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout_s=2)
    store = FileArtifactStore(tmp_path / "artifacts", remote=remote)
    yield store
    store.close()


def test_a_put_the_shared_store_refuses_is_unavailable_and_leaves_no_file(down: FileArtifactStore) -> None:
    for put in (lambda: down.put_image_sync(photo()), lambda: down.put_bytes_sync(b"{}", "application/json")):
        with pytest.raises(AdgraphError) as e:
            put()
        assert e.value.code == "ARTIFACT_STORE_UNAVAILABLE"
        assert e.value.http_status == 503
        assert "artifact store" in e.value.message
    assert files_under(down.root) == []  # no file (whole or half) that only this machine could read
    # and a read while it is down says so, instead of claiming the artifact does not exist
    with pytest.raises(AdgraphError) as e:
        down.find(MISSING)
    assert e.value.code == "ARTIFACT_STORE_UNAVAILABLE"


def test_s3_credentials_from_settings_without_any_aws_environment(s3_endpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    settings = Settings(
        data_dir=tmp_path,
        artifacts_url=f"s3://{BUCKET}/creds-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )
    assert "testing" not in repr(settings.s3_secret_access_key)
    store = open_artifact_store(settings)
    try:
        ref = store.put_bytes_sync(b"{}", "application/json")
        assert store.remote is not None and store.remote.exists(ref.id)
    finally:
        store.close()


def test_settings_pick_the_backend(tmp_path) -> None:
    default = open_artifact_store(Settings(data_dir=tmp_path, artifacts_url=None))
    assert default.remote is None and default.root == tmp_path / "artifacts"
    on_disk = open_artifact_store(
        Settings(data_dir=tmp_path, artifacts_url=(tmp_path / "elsewhere").as_uri())
    )
    assert on_disk.remote is None and on_disk.root == tmp_path / "elsewhere"
    plain = open_artifact_store(Settings(data_dir=tmp_path, artifacts_url=str(tmp_path / "plain")))
    assert plain.remote is None and plain.root == tmp_path / "plain"
    pg = open_artifact_store(Settings(data_dir=tmp_path, artifacts_url="postgresql://u:hunter2@db/adgraph"))
    assert isinstance(pg.remote, PostgresBlobs) and "hunter2" not in pg.remote.url
    assert pg.root == tmp_path / "artifacts"  # the local cache
    for bad in ("ftp://host/x", "s3://", "file://relative/path"):
        with pytest.raises(ValueError, match="artifacts_url|file URL|S3 URL"):
            Settings(data_dir=tmp_path, artifacts_url=bad)


# -- end to end: an upload to one API server, downloaded from another --------------------------------------

BANANA = (PHOTOS / "banana.png").read_bytes()


async def make_key(settings: Settings) -> str:
    """A key of tenant `acme` in the servers' database, as `adgraph keys create` makes one."""
    engine = make_engine(settings.database)
    store = JobStore(engine)
    try:
        await migrate(engine)
        key, _ = await Accounts(store, settings).create("acme", ["submit"])
    finally:
        store.close()
        await engine.dispose()
    return key


async def test_an_upload_to_one_api_server_downloads_from_another(s3_endpoint, tmp_path) -> None:
    """Two app instances (two machines' data_dirs) sharing the jobs database and an s3:// artifact store."""
    url = f"s3://{BUCKET}/e2e-{uuid.uuid4().hex[:8]}"
    shared = {
        "artifacts_url": url,
        "s3_endpoint_url": s3_endpoint,
        "s3_region": "us-east-1",
        "database_url": f"sqlite:///{tmp_path / 'jobs.db'}",
        "checkpoint_url": f"sqlite:///{tmp_path / 'checkpoints.db'}",
        "secret": "servers-sharing-a-database-share-this",
    }
    one = Settings(data_dir=tmp_path / "api-1", **shared)
    two = Settings(data_dir=tmp_path / "api-2", **shared)
    auth = {"Authorization": f"Bearer {await make_key(one)}"}

    app1, app2 = create_app(one, run_jobs=False), create_app(two, run_jobs=False)
    async with (
        app1.router.lifespan_context(app1),
        app2.router.lifespan_context(app2),
        httpx.AsyncClient(transport=httpx.ASGITransport(app1), base_url="http://127.0.0.1") as api1,
        httpx.AsyncClient(transport=httpx.ASGITransport(app2), base_url="http://127.0.0.1") as api2,
    ):
        r = await api1.post("/v1/artifacts", headers=auth, files={"file": ("banana.png", BANANA)})
        assert r.status_code == 201, r.text
        artifact_id = r.json()["id"]
        assert not (two.artifacts_dir / artifact_id[:2]).exists()  # machine 2 never saw it

        got = await api2.get(f"/v1/artifacts/{artifact_id}", headers=auth)
        assert got.status_code == 200, got.text
        assert got.content == BANANA
        assert (two.artifacts_dir / artifact_id[:2]).is_dir()  # now in machine 2's cache
        assert got.headers["content-type"] == "image/png"
        assert got.headers["etag"] == f'"{artifact_id}"'
        # what no machine has is still 404 there
        missing = await api2.get(f"/v1/artifacts/{MISSING}", headers=auth)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "ARTIFACT_NOT_FOUND"


async def test_an_upload_while_the_shared_store_is_down_is_503(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        artifacts_url=f"s3://{BUCKET}/down",
        s3_endpoint_url=f"http://127.0.0.1:{closed_port()}",
        s3_region="us-east-1",
        database_url=None,
        checkpoint_url=None,
    )
    auth = {"Authorization": f"Bearer {await make_key(settings)}"}
    app = create_app(settings, run_jobs=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as api,
    ):
        r = await api.post("/v1/artifacts", headers=auth, files={"file": ("banana.png", BANANA)})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "ARTIFACT_STORE_UNAVAILABLE"
        assert files_under(settings.artifacts_dir) == []
