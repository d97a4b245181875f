"""Retention as a client sees it, over real HTTP: DELETE /v1/jobs/{id} removes a finished job, its
checkpoints, events and the files only it used (an upload, and a file another job or a branch uses, stay);
a queued or running job is refused; another tenant's is 404; the TTL sweeper deletes old finished jobs and
old uploads no job uses; /v1/system counts each tenant's storage."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from service.jobs import open_service
from service.settings import Settings
from tests.integration.api_support import Faults, LiveServer, adgraph, error_of, make_key, wait_for
from tests.support import PHOTOS, png_bytes, wait_until

pytestmark = pytest.mark.integration

_BANANA = Image.open(io.BytesIO((PHOTOS / "banana.png").read_bytes())).convert("RGB")
_VARIANT = itertools.count(1)


def photo() -> bytes:
    """The banana photo a little smaller each time: its own bytes and its own cutout, ad and previews
    (one changed pixel would be cut away with the background, and the rest come out the same)."""
    n = next(_VARIANT)
    return png_bytes(_BANANA.resize((_BANANA.width - 8 * n, _BANANA.height - 8 * n)))


class Client:
    def __init__(self, base_url: str, key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=base_url, timeout=30, headers=headers)

    def upload_out(self, data: bytes) -> dict[str, Any]:
        r = self.http.post("/v1/artifacts", files={"file": ("p.png", data, "image/png")})
        assert r.status_code == 201, r.text
        return r.json()

    def upload(self, data: bytes) -> str:
        return self.upload_out(data)["id"]

    def submit(self, photo_id: str, headline: str = "우리 가게") -> dict[str, Any]:
        body = {"workflow": "ad", "input": {"product_image": photo_id, "headline": headline}}
        r = self.http.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        return r.json()

    def finished(self, photo_id: str, headline: str = "우리 가게") -> dict[str, Any]:
        job = wait_for(self.http, self.submit(photo_id, headline)["id"])
        assert job["status"] == "succeeded", job
        return job


class Disk:
    """What the server keeps, read straight from its data dir (SQLite databases and artifact files)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _query(self, url: str, sql: str, *args: Any) -> list[tuple]:
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(sql, args).fetchall()

    def has_file(self, artifact_id: str) -> bool:
        folder = self.settings.artifacts_dir / artifact_id[:2]
        return any(folder.glob(artifact_id[2:] + ".*"))

    def checkpoints(self, job_id: str) -> int:
        q = "SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = ?) + "
        q += "(SELECT count(*) FROM writes WHERE thread_id = ?)"
        return self._query(self.settings.checkpoints, q, job_id, job_id)[0][0]

    def events(self, job_id: str) -> int:
        return self._query(
            self.settings.database, "SELECT count(*) FROM job_events WHERE job_id = ?", job_id
        )[0][0]

    def used_by_others(self, job_id: str) -> set[str]:
        """What other jobs refer to (the same text layer of the same headline over another photo, say)."""
        q = "SELECT artifact_id FROM job_artifacts WHERE job_id != ?"
        return {r[0] for r in self._query(self.settings.database, q, job_id)}

    def artifacts_of(self, job_id: str) -> set[str]:
        q = "SELECT artifact_id FROM job_artifacts WHERE job_id = ?"
        return {r[0] for r in self._query(self.settings.database, q, job_id)}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, Client], Disk]]:
    """One server with keys for two tenants, a reader of the first and an admin; one job at a time."""
    data_dir = tmp_path_factory.mktemp("retention")
    keys = {
        "a": make_key(data_dir, "shop-a"),
        "b": make_key(data_dir, "shop-b"),
        "a_read": make_key(data_dir, "shop-a", "--scope", "read"),
        "admin": make_key(data_dir, "ops", "--scope", "admin"),
    }
    settings = Settings(data_dir=data_dir, database_url=None, checkpoint_url=None, max_concurrent_jobs=1)
    live = LiveServer(settings, Faults())
    live.start()
    clients = {name: Client(live.base_url, key) for name, key in keys.items()}
    try:
        yield live, clients, Disk(settings)
    finally:
        for c in clients.values():
            c.http.close()
        live.stop()


def result_ids(job: dict[str, Any]) -> set[str]:
    return {r["id"] for r in job["result"].values()}


def refs_in(value: Any) -> set[str]:
    """The artifact ids in a checkpoint's values (artifact references are {id, mime, …})."""
    if isinstance(value, dict):
        own = {value["id"]} if "mime" in value and isinstance(value.get("id"), str) else set()
        return own.union(*(refs_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(refs_in(v) for v in value))
    return set()


def test_deleting_a_finished_job_removes_it_its_checkpoints_events_and_files_but_keeps_its_upload(
    server,
) -> None:
    live, c, disk = server
    a = c["a"]
    upload = photo()
    photo_id = a.upload(upload)
    job = a.finished(photo_id)
    made = disk.artifacts_of(job["id"])
    assert photo_id in made and result_ids(job) <= made  # the input and what its nodes made
    checkpoints = a.http.get(f"/v1/jobs/{job['id']}/checkpoints").json()
    assert disk.checkpoints(job["id"]) and disk.events(job["id"])

    r = a.http.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 204 and r.content == b"", r.text

    for path in ("", "/checkpoints", f"/checkpoints/{checkpoints[-1]['id']}", "/events"):
        error_of(a.http.get(f"/v1/jobs/{job['id']}{path}"), 404, "JOB_NOT_FOUND")
    error_of(a.http.delete(f"/v1/jobs/{job['id']}"), 404, "JOB_NOT_FOUND")
    assert job["id"] not in {j["id"] for j in a.http.get("/v1/jobs?limit=200").json()["jobs"]}
    assert disk.checkpoints(job["id"]) == 0 and disk.events(job["id"]) == 0
    assert disk.artifacts_of(job["id"]) == set()
    for artifact_id in made - {photo_id}:  # results, intermediates, previews: nobody else holds them
        error_of(a.http.get(f"/v1/artifacts/{artifact_id}"), 404, "ARTIFACT_NOT_FOUND")
        assert not disk.has_file(artifact_id), artifact_id
    # the upload is the tenant's own: it stays, and makes a new job
    assert a.http.get(f"/v1/artifacts/{photo_id}").content == upload
    assert a.finished(photo_id)["status"] == "succeeded"


def test_files_another_job_or_a_branch_uses_stay_and_the_branch_keeps_working(server) -> None:
    live, c, disk = server
    a = c["a"]
    photo_id = a.upload(photo())
    first = a.finished(photo_id)
    twin = a.finished(photo_id, "다른 문구")  # the same photo: the same cutout
    r = a.http.post(
        f"/v1/jobs/{first['id']}/branch", json={"from_node": "composite", "input": {"headline": "새"}}
    )
    assert r.status_code == 202, r.text
    child = wait_for(a.http, r.json()["id"])
    assert child["status"] == "succeeded", child
    # the files of the state the branch was seeded with are the child's own too
    at = child["parent"]["checkpoint_id"]
    seeded_ids = refs_in(a.http.get(f"/v1/jobs/{first['id']}/checkpoints/{at}").json()["values"])
    assert len(seeded_ids) > 1 and seeded_ids <= disk.artifacts_of(child["id"])
    shared_with_twin = disk.artifacts_of(first["id"]) & disk.artifacts_of(twin["id"]) - {photo_id}
    assert shared_with_twin, "two jobs of one photo share at least its cutout"
    only_first = disk.artifacts_of(first["id"]) - disk.used_by_others(first["id"])

    assert a.http.delete(f"/v1/jobs/{first['id']}").status_code == 204

    for artifact_id in shared_with_twin | seeded_ids | result_ids(twin) | result_ids(child):
        assert a.http.get(f"/v1/artifacts/{artifact_id}").status_code == 200, artifact_id
        assert disk.has_file(artifact_id)
    assert only_first, "the first job made something only it used (its ad)"
    for artifact_id in only_first - {photo_id}:
        assert not disk.has_file(artifact_id)
    # the branch is whole without its parent: its checkpoints read, and it branches again
    assert len(a.http.get(f"/v1/jobs/{child['id']}/checkpoints").json()) > 1
    again = a.http.post(
        f"/v1/jobs/{child['id']}/branch", json={"from_node": "composite", "input": {"headline": "또"}}
    )
    assert again.status_code == 202, again.text
    assert wait_for(a.http, again.json()["id"])["status"] == "succeeded"


def test_a_queued_or_running_job_is_not_deletable(server) -> None:
    live, c, disk = server
    a = c["a"]
    photo_id = a.upload(photo())
    with live.faults.gate.closed() as gate:
        running = a.submit(photo_id)
        assert gate.entered.wait(60)
        queued = a.submit(photo_id)
        for job, status in ((running, "running"), (queued, "queued")):
            err = error_of(a.http.delete(f"/v1/jobs/{job['id']}"), 409, "JOB_NOT_DELETABLE")
            assert "cancel it first" in err["message"] and err["details"]["status"] == status
        assert a.http.get(f"/v1/artifacts/{photo_id}").status_code == 200
    for job in (running, queued):
        assert wait_for(a.http, job["id"])["status"] == "succeeded"
        assert disk.checkpoints(job["id"]) and disk.events(job["id"])


def test_another_tenant_or_a_reader_cannot_delete_and_nothing_is_removed(server) -> None:
    live, c, disk = server
    a, b = c["a"], c["b"]
    photo_id = a.upload(photo())
    job = a.finished(photo_id)
    made = disk.artifacts_of(job["id"])
    error_of(b.http.delete(f"/v1/jobs/{job['id']}"), 404, "JOB_NOT_FOUND")
    error_of(c["a_read"].http.delete(f"/v1/jobs/{job['id']}"), 403, "FORBIDDEN")
    assert a.http.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert disk.checkpoints(job["id"]) and disk.events(job["id"]) and disk.artifacts_of(job["id"]) == made
    assert all(disk.has_file(i) and a.http.get(f"/v1/artifacts/{i}").status_code == 200 for i in made)
    # the machine's own CLI may (tenant `local` is the administrator)
    deleted = adgraph("jobs", "delete", job["id"], data_dir=live.settings.data_dir)
    assert deleted.returncode == 0, deleted.stderr
    error_of(a.http.get(f"/v1/jobs/{job['id']}"), 404, "JOB_NOT_FOUND")
    assert a.http.get(f"/v1/artifacts/{photo_id}").status_code == 200
    refused = adgraph("jobs", "delete", job["id"], data_dir=live.settings.data_dir)
    assert refused.returncode == 2 and "JOB_NOT_FOUND" in refused.stderr


def test_system_storage_counts_each_tenants_files(server) -> None:
    live, c, disk = server

    def storage() -> dict[str, dict[str, int]]:
        r = c["admin"].http.get("/v1/system")
        assert r.status_code == 200, r.text
        return r.json()["storage"]

    none = {"artifacts": 0, "bytes": 0}
    before = storage()
    data = photo()
    size = c["b"].upload_out(data)["bytes"]
    after = storage()
    b0 = before.get("shop-b", none)
    assert after["shop-b"] == {"artifacts": b0["artifacts"] + 1, "bytes": b0["bytes"] + size}
    c["b"].upload(data)  # the same bytes again: the same file, nothing more
    assert storage()["shop-b"] == after["shop-b"]
    c["a"].upload(data)  # another tenant's upload of them: one file on disk, counted for each
    a0 = after.get("shop-a", none)
    assert storage()["shop-a"] == {"artifacts": a0["artifacts"] + 1, "bytes": a0["bytes"] + size}
    assert storage()["shop-b"] == after["shop-b"]
    error_of(c["a"].http.get("/v1/system"), 403, "FORBIDDEN")


# -- the TTL sweeper -------------------------------------------------------------------------------------


@pytest.fixture
def sweeping(tmp_path) -> Iterator[tuple[LiveServer, Client, Disk]]:
    """An open server (no keys: tenant `local`) whose own sweeper deletes finished jobs 2 s old, every
    0.3 s, and uploads no job uses after 30 days."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=None,
        checkpoint_url=None,
        max_concurrent_jobs=1,
        job_ttl_days=2 / 86400,
        artifact_ttl_days=30,
        sweep_interval_s=0.3,
    )
    live = LiveServer(settings, Faults())
    live.start()
    client = Client(live.base_url)
    try:
        yield live, client, Disk(settings)
    finally:
        client.http.close()
        live.stop()


def test_the_sweeper_deletes_finished_jobs_past_their_ttl_and_keeps_their_uploads(sweeping) -> None:
    live, c, disk = sweeping
    photo_id = c.upload(photo())
    job = c.finished(photo_id)
    made = disk.artifacts_of(job["id"]) - {photo_id}
    wait_until(lambda: c.http.get(f"/v1/jobs/{job['id']}").status_code == 404, timeout=30, what="the sweep")
    assert disk.checkpoints(job["id"]) == 0 and disk.events(job["id"]) == 0
    assert made and not any(disk.has_file(i) for i in made)
    assert c.http.get(f"/v1/artifacts/{photo_id}").status_code == 200  # 30 days to go


def test_the_sweeper_deletes_old_uploads_no_job_uses(sweeping) -> None:
    live, c, disk = sweeping
    unused = c.upload(photo())
    with live.faults.gate.closed() as gate:
        in_use = c.upload(photo())
        held = c.submit(in_use)  # running: its input is its own from the moment it was queued
        assert gate.entered.wait(60)

        async def sweep_later() -> dict[str, int]:
            async with open_service(live.settings, run_jobs=False, evaluations=False) as jobs:
                return await jobs.sweep(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=31))

        counts = asyncio.run(sweep_later())
        assert counts["artifacts"] >= 1 and counts["files"] >= 1, counts
        error_of(c.http.get(f"/v1/artifacts/{unused}"), 404, "ARTIFACT_NOT_FOUND")
        assert not disk.has_file(unused)
        assert c.http.get(f"/v1/artifacts/{in_use}").status_code == 200 and disk.has_file(in_use)
    assert wait_for(c.http, held["id"])["status"] == "succeeded"
