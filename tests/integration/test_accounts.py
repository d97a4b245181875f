"""Accounts and tenants as a client sees them, over real HTTP: keys made by `adgraph keys create`, every
route refusing a missing, forged or revoked key, another tenant's jobs and files answering 404, scopes,
rate limits, quotas, the queue's cap and idempotent submissions."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageOps

from service.accounts import Accounts
from service.db import make_engine, migrate
from service.settings import Settings
from service.store import JobStore
from tests.integration.api_support import Faults, LiveServer, error_of, sse_events, wait_for
from tests.support import ADGRAPH, PHOTOS, png_bytes, wait_until

pytestmark = pytest.mark.integration

BANANA = (PHOTOS / "banana.png").read_bytes()
FISH = (PHOTOS / "dried_fish_plate.png").read_bytes()
# a photo no other test of this module uploads: the fish plate mirrored (other bytes, a real product)
CAKE = png_bytes(ImageOps.mirror(Image.open(PHOTOS / "dried_fish_plate.png").convert("RGB")))
STREAMS = 3  # event streams a key may hold open at once


def adgraph(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADGRAPH_DATA_DIR": str(data_dir)}
    env.pop("ADGRAPH_DATABASE_URL", None)
    return subprocess.run([ADGRAPH, *args], env=env, capture_output=True, text=True, timeout=120)


def make_key(data_dir: Path, tenant: str, *extra: str) -> dict[str, Any]:
    """A key from the CLI, as an administrator makes one (the server reads it from the same database)."""
    made = adgraph("keys", "create", "--tenant", tenant, *extra, data_dir=data_dir)
    assert made.returncode == 0, made.stderr
    assert "not shown again" in made.stderr
    return json.loads(made.stdout)


OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


class Client:
    def __init__(self, base_url: str, key: str | None, header: str = "authorization") -> None:
        headers = {}
        if key is not None:
            headers = {"Authorization": f"Bearer {key}"} if header == "authorization" else {"x-api-key": key}
        self.http = httpx.Client(base_url=base_url, timeout=30, headers=headers)
        OPEN.append(self.http)

    def upload(self, data: bytes = BANANA, **kw: Any) -> httpx.Response:
        return self.http.post("/v1/artifacts", files={"file": ("p.png", data, "image/png")}, **kw)

    def submit(self, photo: str, **kw: Any) -> httpx.Response:
        body = {"workflow": "ad", "input": {"product_image": photo, "headline": "우리 가게"}}
        return self.http.post("/v1/jobs", json=body, **kw)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, dict[str, Any]]]]:
    """One server over a data dir that has keys for two tenants, a read-only key, an admin and a key
    with a small rate; jobs one at a time so a held job keeps the next one queued."""
    data_dir = tmp_path_factory.mktemp("accounts")
    keys = {
        "a": make_key(data_dir, "shop-a", "--max-running", "2"),
        "b": make_key(data_dir, "shop-b"),
        "a_read": make_key(data_dir, "shop-a", "--scope", "read"),
        "admin": make_key(data_dir, "ops", "--scope", "admin"),
        "slow": make_key(data_dir, "shop-c", "--rate", "5/minute"),
    }
    settings = Settings(
        data_dir=data_dir,
        database_url=None,
        checkpoint_url=None,
        max_concurrent_jobs=1,
        max_streams_per_key=STREAMS,
    )
    live = LiveServer(settings, Faults())
    live.start()
    try:
        yield live, keys
    finally:
        live.stop()


@pytest.fixture(scope="module")
def a_job(server) -> dict[str, Any]:
    """A finished job of tenant A, made from A's own upload."""
    live, keys = server
    a = Client(live.base_url, keys["a"]["key"])
    photo = a.upload().json()["id"]
    job = a.submit(photo).json()
    return {"photo": photo, "job": wait_for(a.http, job["id"])}


def test_no_key_a_forged_key_and_a_malformed_header_are_unauthenticated(server) -> None:
    live, keys = server
    for client in (
        Client(live.base_url, None),
        Client(live.base_url, "adg_000000000000_" + "x" * 43),
        Client(live.base_url, keys["a"]["key"][:-1] + "Z"),  # one character off
        Client(live.base_url, "not-a-key", header="x-api-key"),
    ):
        for r in (client.http.get("/v1/jobs"), client.upload(), client.http.get("/v1/system")):
            error_of(r, 401, "UNAUTHENTICATED")
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert Client(live.base_url, None).http.get("/healthz").status_code == 200  # liveness stays open


def test_x_api_key_works_like_bearer(server) -> None:
    live, keys = server
    r = Client(live.base_url, keys["b"]["key"], header="x-api-key").http.get("/v1/jobs")
    assert r.status_code == 200, r.text


def test_another_tenant_gets_404_for_everything_of_a_job_and_its_files(server, a_job) -> None:
    live, keys = server
    b = Client(live.base_url, keys["b"]["key"])
    job_id = a_job["job"]["id"]
    ad_id = a_job["job"]["result"]["ad"]["id"]
    for method, path, kw in [
        ("GET", f"/v1/jobs/{job_id}", {}),
        ("GET", f"/v1/jobs/{job_id}/checkpoints", {}),
        ("GET", f"/v1/jobs/{job_id}/events", {}),
        ("POST", f"/v1/jobs/{job_id}/cancel", {}),
        ("POST", f"/v1/jobs/{job_id}/resume", {}),
        (
            "POST",
            f"/v1/jobs/{job_id}/branch",
            {"json": {"from_node": "composite", "input": {"headline": "x"}}},
        ),
    ]:
        error_of(b.http.request(method, path, **kw), 404, "JOB_NOT_FOUND")
    checkpoint = Client(live.base_url, keys["a"]["key"]).http.get(f"/v1/jobs/{job_id}/checkpoints").json()[3]
    error_of(b.http.get(f"/v1/jobs/{job_id}/checkpoints/{checkpoint['id']}"), 404, "JOB_NOT_FOUND")
    for artifact in (a_job["photo"], ad_id, checkpoint["preview"]["id"]):
        error_of(b.http.get(f"/v1/artifacts/{artifact}"), 404, "ARTIFACT_NOT_FOUND")
    # someone else's upload cannot be used as one's own product photo
    error_of(b.submit(a_job["photo"]), 404, "ARTIFACT_NOT_FOUND")
    assert job_id not in {j["id"] for j in b.http.get("/v1/jobs").json()["jobs"]}
    # a job of another tenant is answered exactly like one that does not exist: no existence oracle
    missing = b.http.get("/v1/jobs/00000000-0000-4000-8000-000000000000").json()["error"]
    theirs = b.http.get(f"/v1/jobs/{job_id}").json()["error"]
    assert missing["message"].replace("00000000-0000-4000-8000-000000000000", job_id) == theirs["message"]


def test_the_same_bytes_uploaded_by_two_tenants_are_visible_to_each_only_through_its_own_upload(
    server, a_job
) -> None:
    live, keys = server
    b = Client(live.base_url, keys["b"]["key"])
    mine = b.upload()  # the same bytes A uploaded: the same id, now B's too
    assert mine.status_code == 201 and mine.json()["id"] == a_job["photo"]
    assert b.http.get(f"/v1/artifacts/{a_job['photo']}").content == BANANA
    # ...but nothing A's job made from it
    error_of(b.http.get(f"/v1/artifacts/{a_job['job']['result']['ad']['id']}"), 404, "ARTIFACT_NOT_FOUND")


def test_the_owner_sees_its_job_its_results_and_its_events_and_admin_sees_every_tenant(server, a_job) -> None:
    live, keys = server
    a = Client(live.base_url, keys["a"]["key"])
    job = a_job["job"]
    assert a.http.get(f"/v1/artifacts/{job['result']['ad']['id']}").headers["content-type"] == "image/png"
    with a.http.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        assert [e["event"] for e in sse_events(r)][-1] == "job_finished"
    admin = Client(live.base_url, keys["admin"]["key"])
    assert job["id"] in {j["id"] for j in admin.http.get("/v1/jobs?limit=200").json()["jobs"]}
    assert admin.http.get(f"/v1/artifacts/{job['result']['ad']['id']}").status_code == 200
    assert admin.http.get("/v1/system").status_code == 200 and admin.http.get("/metrics").status_code == 200


def test_a_key_without_the_scope_is_forbidden(server, a_job) -> None:
    live, keys = server
    reader = Client(live.base_url, keys["a_read"]["key"])
    assert reader.http.get(f"/v1/jobs/{a_job['job']['id']}").status_code == 200  # same tenant, read scope
    error_of(reader.upload(), 403, "FORBIDDEN")
    error_of(reader.submit(a_job["photo"]), 403, "FORBIDDEN")
    error_of(reader.http.post(f"/v1/jobs/{a_job['job']['id']}/cancel"), 403, "FORBIDDEN")
    for path in ("/v1/system", "/metrics"):
        error_of(Client(live.base_url, keys["a"]["key"]).http.get(path), 403, "FORBIDDEN")


def test_a_key_over_its_rate_gets_429_with_retry_after(server) -> None:
    live, keys = server
    slow = Client(live.base_url, keys["slow"]["key"])
    answers = [slow.http.get("/v1/jobs") for _ in range(7)]
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 2
    error_of(answers[5], 429, "RATE_LIMITED")
    assert 1 <= int(answers[5].headers["retry-after"]) <= 60
    assert Client(live.base_url, keys["b"]["key"]).http.get("/v1/jobs").status_code == 200  # per key


def test_a_key_at_its_running_job_quota_gets_429_and_the_jobs_it_has_finish(server, a_job) -> None:
    live, keys = server
    a = Client(live.base_url, keys["a"]["key"])
    with live.faults.gate.closed() as gate:
        held = a.submit(a_job["photo"]).json()  # running, held inside background
        assert gate.entered.wait(60)
        queued = a.submit(a_job["photo"]).json()
        refused = a.submit(a_job["photo"])
        error_of(refused, 429, "QUOTA_EXCEEDED")
        assert refused.headers["retry-after"]
        # a branch is a job too: the quota holds for it as well
        branch = {"from_node": "composite", "input": {"cta": "지금 주문"}}
        error_of(a.http.post(f"/v1/jobs/{a_job['job']['id']}/branch", json=branch), 429, "QUOTA_EXCEEDED")
        # another key of another tenant is not held back by it
        b = Client(live.base_url, keys["b"]["key"])
        b_photo = b.upload(FISH).json()["id"]
        b_job = b.submit(b_photo)
        assert b_job.status_code == 202, b_job.text
    for client, job in ((a, held), (a, queued), (b, b_job.json())):
        assert wait_for(client.http, job["id"])["status"] == "succeeded"


def test_an_idempotency_key_replays_the_first_answer_and_makes_one_job(server, a_job) -> None:
    live, keys = server
    a = Client(live.base_url, keys["a"]["key"])
    before = len(a.http.get("/v1/jobs?limit=200").json()["jobs"])
    first = a.submit(a_job["photo"], headers={"Idempotency-Key": "order-1"})
    again = a.submit(a_job["photo"], headers={"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    assert len(a.http.get("/v1/jobs?limit=200").json()["jobs"]) == before + 1
    other = a.http.post(
        "/v1/jobs",
        json={"workflow": "ad", "input": {"product_image": a_job["photo"], "headline": "다른 광고"}},
        headers={"Idempotency-Key": "order-1"},
    )
    error_of(other, 422, "INVALID_INPUT")
    # another tenant's use of the same key is its own
    b = Client(live.base_url, keys["b"]["key"])
    b_photo = b.upload().json()["id"]
    assert b.submit(b_photo, headers={"Idempotency-Key": "order-1"}).json()["id"] != first.json()["id"]
    up1 = a.upload(FISH, headers={"Idempotency-Key": "up-1"})
    up2 = a.upload(FISH, headers={"Idempotency-Key": "up-1"})
    assert up1.status_code == up2.status_code == 201 and up1.json() == up2.json()
    wait_for(a.http, first.json()["id"])


def test_concurrent_copies_of_a_request_with_one_idempotency_key_make_one_job(server, a_job) -> None:
    """A client that retries before its first try was answered (a timeout on a slow link) gets the one
    job, not one per copy."""
    live, keys = server
    b = Client(live.base_url, keys["b"]["key"])
    photo = b.upload().json()["id"]
    before = {j["id"] for j in b.http.get("/v1/jobs?limit=200").json()["jobs"]}
    start = threading.Barrier(8)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=live.base_url, headers=b.http.headers, timeout=60) as http:
            start.wait()
            body = {"workflow": "ad", "input": {"product_image": photo, "headline": "동시에"}}
            return http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "retry-storm"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    made = {j["id"] for j in b.http.get("/v1/jobs?limit=200").json()["jobs"]} - before
    assert made == {answers[0].json()["id"]}
    wait_for(b.http, answers[0].json()["id"])


def test_concurrent_submissions_cannot_pass_a_keys_quota_together(server, a_job) -> None:
    live, keys = server
    key = make_key(live.settings.data_dir, "shop-e", "--max-running", "2")
    e = Client(live.base_url, key["key"])
    photo = e.upload().json()["id"]
    start = threading.Barrier(6)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=live.base_url, headers=e.http.headers, timeout=60) as http:
            start.wait()
            body = {"workflow": "ad", "input": {"product_image": photo, "headline": "한정 수량"}}
            return http.post("/v1/jobs", json=body)

    # no job of the burst finishes (and frees a slot) while it is sent
    with live.faults.gate.closed(), ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    accepted = [r for r in answers if r.status_code == 202]
    assert len(accepted) == 2, [r.status_code for r in answers]
    for r in answers:
        if r.status_code != 202:
            error_of(r, 429, "QUOTA_EXCEEDED")
    for r in accepted:
        assert wait_for(e.http, r.json()["id"])["status"] == "succeeded"


def test_a_key_holds_only_so_many_event_streams_open_and_gets_a_slot_back_when_one_closes(
    server, a_job
) -> None:
    live, keys = server
    b = Client(live.base_url, keys["b"]["key"])
    photo = b.upload().json()["id"]
    with live.faults.gate.closed() as gate:
        job = b.submit(photo).json()  # held in background: its streams stay open
        assert gate.entered.wait(60)
        url = f"{live.base_url}/v1/jobs/{job['id']}/events"
        with contextlib.ExitStack() as streams:
            for _ in range(STREAMS):
                r = streams.enter_context(b.http.stream("GET", url))
                assert r.status_code == 200
            over = b.http.get(url)
            assert error_of(over, 429, "RATE_LIMITED")["message"].count("ADGRAPH_MAX_STREAMS_PER_KEY") == 1
            assert over.headers["retry-after"]
            admin = Client(live.base_url, keys["admin"]["key"])  # another key is not held back by it
            with admin.http.stream("GET", url) as other:
                assert other.status_code == 200

        # the streams closed: their slots come back once the server has seen them go
        def streams_again() -> bool:
            with b.http.stream("GET", url) as r:
                return r.status_code == 200

        wait_until(streams_again, timeout=30, what="a closed stream's slot to come back")
    assert wait_for(b.http, job["id"])["status"] == "succeeded"


def test_an_upload_without_a_key_is_refused_before_its_body_is_sent(server) -> None:
    """An unauthenticated client cannot make the server read (and spool) megabytes: the 401 comes back
    while the client has sent only the headers of a 5 MB upload."""
    live, _ = server
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:
        s.sendall(
            b"POST /v1/artifacts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 5000000\r\n\r\n"
        )
        head = s.recv(65536).decode("latin-1")  # the body is never sent: only an early answer arrives
    assert head.startswith("HTTP/1.1 401"), head[:200]
    assert '"UNAUTHENTICATED"' in head


def segment_of(job: dict[str, Any]) -> dict[str, Any]:
    return next(n for n in job["nodes"] if n["name"] == "segment")


def test_a_photo_is_cut_out_once_per_tenant_and_again_once_its_cutout_is_gone(server) -> None:
    """The second ad of a photo reuses its cut-out (`cached` in the job's nodes, the same file, an ad as
    good); another tenant with the same bytes gets its own work (no timing says what others uploaded);
    once the jobs holding the cut-out are deleted, the next job cuts it out again."""
    live, keys = server
    a, b = Client(live.base_url, keys["a"]["key"]), Client(live.base_url, keys["b"]["key"])
    photo = a.upload(CAKE).json()["id"]
    first = wait_for(a.http, a.submit(photo).json()["id"])
    second = wait_for(a.http, a.submit(photo).json()["id"])
    assert first["status"] == second["status"] == "succeeded"
    assert not segment_of(first)["cached"] and segment_of(second)["cached"]
    assert second["result"]["cutout"]["id"] == first["result"]["cutout"]["id"]
    assert [n["name"] for n in second["nodes"]] == [n["name"] for n in first["nodes"]]
    assert not any(n["cached"] for n in second["nodes"] if n["name"] != "segment")
    ad = Image.open(io.BytesIO(a.http.get(second["result"]["ad"]["url"]).content))
    assert ad.size == (1080, 1080)

    b_photo = b.upload(CAKE).json()["id"]
    assert b_photo == photo  # the same bytes, one file on disk
    theirs = wait_for(b.http, b.submit(b_photo).json()["id"])
    assert theirs["status"] == "succeeded" and not segment_of(theirs)["cached"]

    for job in (first, second):
        assert a.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    # B's job may hold the very same cut-out file (the same bytes): then it stays, and A reuses it
    again = wait_for(a.http, a.submit(photo).json()["id"])
    assert again["status"] == "succeeded"
    assert a.http.get(again["result"]["cutout"]["url"]).status_code == 200
    assert b.http.delete(f"/v1/jobs/{theirs['id']}").status_code == 204
    assert a.http.delete(f"/v1/jobs/{again['id']}").status_code == 204
    fresh = wait_for(a.http, a.submit(photo).json()["id"])
    assert fresh["status"] == "succeeded" and not segment_of(fresh)["cached"]
    assert a.http.get(fresh["result"]["cutout"]["url"]).status_code == 200


def test_a_revoked_key_is_refused_within_seconds(server) -> None:
    live, _ = server
    data_dir = live.settings.data_dir
    key = make_key(data_dir, "shop-d")
    c = Client(live.base_url, key["key"])
    assert c.http.get("/v1/jobs").status_code == 200
    revoked = adgraph("keys", "revoke", key["id"], data_dir=data_dir)
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    wait_until(lambda: c.http.get("/v1/jobs").status_code == 401, timeout=10, what="the revoke to land")
    listed = {k["id"]: k for k in json.loads(adgraph("keys", "list", data_dir=data_dir).stdout)}
    assert (
        listed[key["id"]]["revoked_at"]
        and "key" not in listed[key["id"]]
        and "digest" not in listed[key["id"]]
    )


def test_the_database_holds_digests_only(server) -> None:
    live, keys = server

    async def digests() -> list[str]:
        engine = make_engine(live.settings.database)
        store = JobStore(engine)
        try:
            await migrate(engine)
            return [r.digest for r in await Accounts(store, live.settings).list()]
        finally:
            store.close()
            await engine.dispose()

    stored = asyncio.run(digests())
    assert stored and not {k["key"] for k in keys.values()} & set(stored)
    raw = Path(live.settings.database.removeprefix("sqlite:///")).read_bytes()
    assert not any(k["key"].encode() in raw for k in keys.values())


def test_a_full_queue_is_503_with_retry_after(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=None, checkpoint_url=None, max_concurrent_jobs=1, max_queue=1
    )
    live = LiveServer(settings, Faults())
    live.start()
    try:
        c = Client(live.base_url, None)  # no key exists: open on loopback
        photo = c.upload().json()["id"]
        with live.faults.gate.closed() as gate:
            held = c.submit(photo).json()
            assert gate.entered.wait(60)
            queued = c.submit(photo).json()
            full = c.submit(photo)
            error_of(full, 503, "QUEUE_FULL")
            assert int(full.headers["retry-after"]) > 0
        for job in (held, queued):
            assert wait_for(c.http, job["id"])["status"] == "succeeded"
    finally:
        live.stop()


def test_serve_beyond_loopback_without_a_key_refuses_to_start_naming_the_setting(tmp_path) -> None:
    run = adgraph("serve", "--host", "0.0.0.0", "--port", "1", data_dir=tmp_path)
    assert run.returncode == 2
    assert "ADGRAPH_AUTH" in run.stderr and "adgraph keys create" in run.stderr


def test_studio_beyond_loopback_refuses_to_start(tmp_path) -> None:
    run = adgraph("studio", "--host", "0.0.0.0", "--port", "1", data_dir=tmp_path)
    assert run.returncode == 2 and "loopback" in run.stderr
