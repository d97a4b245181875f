"""Hostile clients against a server with keys, over real HTTP (issue 16): path tricks in ids, another
tenant's ids in the routes test_accounts.py does not cover, malformed and oversized bodies, 200 event
streams opened and dropped, a burst of 1,000 submissions, HTML in every text field, and schemathesis with a
valid key. After every test the server still answers and tenant A's finished job and its files are exactly
as they were when the module started.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import io
import itertools
import json
import os
import socket
import struct
import subprocess
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase

from checkpoints.artifacts import FileArtifactStore
from service.settings import Settings
from tests.integration.api_support import Faults, LiveServer, error_of, wait_for
from tests.support import ADGRAPH, PHOTOS, wait_until

pytestmark = pytest.mark.integration

BANANA = (PHOTOS / "banana.png").read_bytes()
FISH = (PHOTOS / "dried_fish_plate.png").read_bytes()
RATE = "100000/minute"  # generous: these tests count answers, not the limiter (test_accounts.py does)
MAX_QUEUE = 300  # a burst of 1,000 overflows it: some stored, the rest QUEUE_FULL
SCRIPT = "<script>alert(1)</script><img src=x onerror=alert(2)>"  # 53 characters: fits even `cta`
PROFILE_TEXT = (
    "store_name",
    "store_type",
    "budget",
    "period",
    "advertising_goal",
    "target_customer",
    "advertising_media",
    "store_strength",
    "location",
)
# what a refusal of a bad id or body may be: a 4xx in the one error shape, never a 5xx
REFUSALS = {
    400: {"INVALID_INPUT"},
    404: {"NOT_FOUND", "JOB_NOT_FOUND", "ARTIFACT_NOT_FOUND", "CHECKPOINT_NOT_FOUND"},
    413: {"REQUEST_TOO_LARGE", "IMAGE_TOO_LARGE"},
    415: {"INVALID_INPUT"},
    422: {"INVALID_INPUT", "INVALID_IMAGE"},
    431: {"HEADERS_TOO_LARGE"},
}


def adgraph(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADGRAPH_DATA_DIR": str(data_dir)}
    env.pop("ADGRAPH_DATABASE_URL", None)
    return subprocess.run([ADGRAPH, *args], env=env, capture_output=True, text=True, timeout=120)


def make_key(data_dir: Path, tenant: str) -> str:
    made = adgraph("keys", "create", "--tenant", tenant, "--rate", RATE, data_dir=data_dir)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["key"]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """One SQLite server with keys for tenants A and B and a third tenant for the burst; one job at a
    time, so a job held in `background` keeps the rest queued."""
    data_dir = tmp_path_factory.mktemp("hostile-clients")
    keys = {name: make_key(data_dir, f"shop-{name}") for name in ("a", "b", "burst")}
    settings = Settings(
        data_dir=data_dir,
        database_url=None,
        checkpoint_url=None,
        max_concurrent_jobs=1,
        max_queue=MAX_QUEUE,
    )
    live = LiveServer(settings, Faults())
    live.start()
    try:
        yield live, keys
    finally:
        live.stop()


@pytest.fixture(scope="module")
def a(server) -> Iterator[httpx.Client]:
    live, keys = server
    with httpx.Client(base_url=live.base_url, headers=auth(keys["a"]), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def b(server) -> Iterator[httpx.Client]:
    live, keys = server
    with httpx.Client(base_url=live.base_url, headers=auth(keys["b"]), timeout=60) as client:
        yield client


def upload(http: httpx.Client, data: bytes = BANANA) -> str:
    r = http.post("/v1/artifacts", files={"file": ("p.png", data, "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def ad_body(photo: str, **inp: Any) -> dict[str, Any]:
    return {"workflow": "ad", "input": {"product_image": photo, "headline": "우리 가게", **inp}}


def finished(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job = wait_for(http, r.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    return job


def checkpoint_of(http: httpx.Client, job_id: str, node: str) -> dict[str, Any]:
    cps = http.get(f"/v1/jobs/{job_id}/checkpoints").json()
    cp = next(c for c in cps if c["node"] == node)
    r = http.get(f"/v1/jobs/{job_id}/checkpoints/{cp['id']}")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def a_job(a) -> dict[str, Any]:
    """Tenant A's finished ad, made from its own upload: what no test may change."""
    photo = upload(a)
    return {"photo": photo, "job": finished(a, ad_body(photo))}


@pytest.fixture(scope="module")
def b_job(b) -> dict[str, Any]:
    photo = upload(b, FISH)
    return {"photo": photo, "job": finished(b, ad_body(photo, headline="건어물"))}


def stored_state(live: LiveServer, http: httpx.Client, a_job: dict[str, Any]) -> dict[str, Any]:
    """A's job, its checkpoints and every file it used or made: through the API and on disk."""
    job_id = a_job["job"]["id"]
    refs = {a_job["photo"]: "image/png"} | {r["id"]: r["mime"] for r in a_job["job"]["result"].values()}
    files = FileArtifactStore(live.settings.artifacts_dir)
    served = {i: hashlib.sha256(http.get(f"/v1/artifacts/{i}").content).hexdigest() for i in refs}
    on_disk = {i: hashlib.sha256(files.path(i, mime).read_bytes()).hexdigest() for i, mime in refs.items()}
    return {
        "job": http.get(f"/v1/jobs/{job_id}").json(),
        "checkpoints": http.get(f"/v1/jobs/{job_id}/checkpoints").json(),
        "served": served,
        "on_disk": on_disk,
    }


@pytest.fixture(scope="module")
def at_start(server, a, a_job) -> dict[str, Any]:
    return stored_state(server[0], a, a_job)


@pytest.fixture(autouse=True)
def _still_serving_and_nothing_stored_changed(server, a, a_job, at_start) -> Iterator[None]:
    yield
    assert a.get("/healthz", timeout=30).status_code == 200
    assert stored_state(server[0], a, a_job) == at_start


def refused(r: httpx.Response, allowed: dict[int, set[str]] = REFUSALS) -> dict[str, Any]:
    """A 4xx of the kinds allowed, in the one error shape."""
    assert r.status_code in allowed, (r.status_code, r.text[:500])
    err = error_of(r, r.status_code, r.json()["error"]["code"])
    assert err["code"] in allowed[r.status_code], err
    return err


def raw_request(live: LiveServer, key: str, target: str, method: str = "GET") -> httpx.Response:
    """`target` sent exactly as written (no client-side normalisation or encoding); the whole answer."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:
        s.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    head, body = b"".join(chunks).split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    return httpx.Response(int(lines[0].split(" ")[1]), headers=headers, content=body)


# -- 1. path tricks in ids -------------------------------------------------------------------------------

# JOB, PHOTO, CP: A's job, upload and a checkpoint of the job, filled in by the test
BAD_JOB_IDS = {
    "dot-dot": "..",
    "dot-dot-slashes": "../../../etc/passwd",
    "encoded-dot-dot-slash": "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "dot-dot-encoded-slash": "..%2f..%2f..%2fetc%2fpasswd",
    "encoded-dot-dot": "%2e%2e",
    "double-encoded": "%252e%252e%252fetc%252fpasswd",
    "backslashes": "..%5c..%5cetc%5cpasswd",
    "nul": "%00",
    "job-then-nul": "JOB%00",
    "job-then-newline": "JOB%0a",
    "job-then-space": "JOB%20",
    "very-long": "a" * 8000,
    "job-then-very-long": "JOB" + "0" * 8000,
    "braced-job": "%7BJOB%7D",
    "raw-braced-job": "{JOB}",
    "uppercase-job": "UPPERJOB",
    "urn-job": "urn:uuid:JOB",
    "job-without-dashes": "HEXJOB",
}
BAD_CHECKPOINT_IDS = {
    "dot-dot": "..",
    "dot-dot-encoded-slash": "..%2f..%2fcheckpoints.db",
    "nul": "%00",
    "checkpoint-then-nul": "CP%00",
    "very-long": "c" * 8000,
    "braced-checkpoint": "%7BCP%7D",
    "uppercase-checkpoint": "UPPERCP",
}
BAD_ARTIFACT_IDS = {
    "dot-dot": "..",
    "dot-dot-slashes": "../../jobs.db",
    "dot-dot-encoded-slash": "..%2f..%2fjobs.db",
    "encoded-dot-dot-then-id": "%2e%2e%2fPHOTO",
    "split-at-the-fan-out-folder": "PH%2fOTO",
    "nul": "%00",
    "id-then-nul": "PHOTO%00",
    "id-then-newline": "PHOTO%0a",
    "id-with-extension": "PHOTO.png",
    "glob": "%2a",
    "glob-with-prefix": "PH%2a",
    "uppercase-hex": "UPPERPHOTO",
    "63-hex": "SHORTPHOTO",
    "65-hex": "PHOTO0",
    "very-long": "f" * 8000,
}
# what the brief pins: malformed ids are 422 INVALID_INPUT, never another tenant's or a file's answer
PINNED_422 = {
    "uppercase-hex",
    "63-hex",
    "65-hex",
    "braced-job",
    "raw-braced-job",
    "uppercase-job",
    "urn-job",
    "job-without-dashes",
    "dot-dot",
    "nul",
}


def fill(text: str, job: str, photo: str, cp: str) -> str:
    for placeholder, value in (
        ("UPPERJOB", job.upper()),
        ("HEXJOB", job.replace("-", "")),
        ("UPPERPHOTO", photo.upper()),
        ("SHORTPHOTO", photo[:63]),
        ("UPPERCP", cp.upper()),
        ("JOB", job),
        ("PHOTO", photo),
        ("PH", photo[:2]),
        ("OTO", photo[2:]),
        ("CP", cp),
    ):
        text = text.replace(placeholder, value)
    return text


def assert_no_file_in(r: httpx.Response, live: LiveServer) -> None:
    assert b"SQLite format 3" not in r.content and b"root:" not in r.content
    assert str(live.settings.data_dir).encode() not in r.content


@pytest.mark.parametrize("route", ["/v1/jobs/{}", "/v1/jobs/{}/events", "/v1/jobs/{}/checkpoints/CP"])
@pytest.mark.parametrize("case", list(BAD_JOB_IDS))
def test_a_bad_job_id_is_a_4xx_in_the_error_shape(server, a, a_job, route, case) -> None:
    live, keys = server
    job_id = a_job["job"]["id"]
    cp = a.get(f"/v1/jobs/{job_id}/checkpoints").json()[-1]["id"]
    r = raw_request(live, keys["a"], fill(route.format(BAD_JOB_IDS[case]), job_id, a_job["photo"], cp))
    err = refused(r)
    assert_no_file_in(r, live)
    if case in PINNED_422 or case.endswith("-job"):
        assert (r.status_code, err["code"]) == (422, "INVALID_INPUT"), err


@pytest.mark.parametrize("case", list(BAD_CHECKPOINT_IDS))
def test_a_bad_checkpoint_id_is_a_4xx_in_the_error_shape(server, a, a_job, case) -> None:
    live, keys = server
    job_id = a_job["job"]["id"]
    cp = a.get(f"/v1/jobs/{job_id}/checkpoints").json()[-1]["id"]
    target = fill(f"/v1/jobs/JOB/checkpoints/{BAD_CHECKPOINT_IDS[case]}", job_id, a_job["photo"], cp)
    r = raw_request(live, keys["a"], target)
    refused(r)
    assert_no_file_in(r, live)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("case", list(BAD_ARTIFACT_IDS))
def test_a_bad_artifact_id_is_a_4xx_never_a_file(server, a_job, method, case) -> None:
    live, keys = server
    target = fill(f"/v1/artifacts/{BAD_ARTIFACT_IDS[case]}", a_job["job"]["id"], a_job["photo"], "")
    r = raw_request(live, keys["a"], target, method)
    if method == "HEAD":  # the headers of the same answer, no body
        assert 400 <= r.status_code < 500 and r.content == b"", (r.status_code, r.content[:200])
        assert not r.headers.get("content-type", "").startswith("image/")
        return
    err = refused(r)
    assert_no_file_in(r, live)
    if case in PINNED_422:
        assert (r.status_code, err["code"]) == (422, "INVALID_INPUT"), err


# -- 2. another tenant's ids in every route --------------------------------------------------------------


def cursor_of(job: dict[str, Any]) -> str:
    """A list cursor at `job`, made as the server makes one (service/jobs.py `_encode_cursor`)."""
    return base64.urlsafe_b64encode(json.dumps([job["created_at"], job["id"]]).encode()).decode()


def all_ids(http: httpx.Client, **params: Any) -> list[str]:
    ids, cursor = [], None
    while True:
        r = http.get("/v1/jobs", params={"limit": 200, **params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        ids += [j["id"] for j in r.json()["jobs"]]
        if not (cursor := r.json()["next_cursor"]):
            return ids


def test_a_cursor_made_from_another_tenants_job_lists_only_ones_own(a, b, a_job, b_job) -> None:
    mine_a, mine_b = set(all_ids(a)), set(all_ids(b))
    assert a_job["job"]["id"] in mine_a and b_job["job"]["id"] in mine_b and not mine_a & mine_b
    for http, theirs, mine in ((a, b_job, mine_a), (b, a_job, mine_b)):
        r = http.get("/v1/jobs", params={"cursor": cursor_of(theirs["job"]), "limit": 200})
        if r.status_code != 200:
            refused(r)
            continue
        listed = {j["id"] for j in r.json()["jobs"]}
        assert listed <= mine and theirs["job"]["id"] not in listed, (listed - mine, theirs["job"]["id"])
    # a cursor is a position, not a key: B's page after A's job still holds only B's jobs
    forged = base64.urlsafe_b64encode(json.dumps(["9999-01-01T00:00:00+00:00", a_job["job"]["id"]]).encode())
    assert set(all_ids(b, cursor=forged.decode())) <= mine_b


def test_another_tenant_cannot_delete_a_job(a, b, a_job) -> None:
    job_id = a_job["job"]["id"]
    error_of(b.delete(f"/v1/jobs/{job_id}"), 404, "JOB_NOT_FOUND")
    assert a.get(f"/v1/jobs/{job_id}").status_code == 200


def test_clip_score_of_another_tenants_artifact_is_404_before_the_model_is_asked_for(a, b, a_job) -> None:
    for artifact in (a_job["photo"], a_job["job"]["result"]["ad"]["id"]):
        r = b.post("/v1/evaluations/clip-score", data={"text": "a banana", "artifact_id": artifact})
        error_of(r, 404, "ARTIFACT_NOT_FOUND")
    # the owner gets past the lookup: to the model (503 here without CLIP weights, or a score)
    r = a.post("/v1/evaluations/clip-score", data={"text": "a banana", "artifact_id": a_job["photo"]})
    assert r.status_code == 200 or error_of(r, 503, "MODEL_UNAVAILABLE"), r.text


def test_another_tenants_artifact_cannot_be_a_homepage_image(b, a_job, b_job) -> None:
    before = all_ids(b)
    for images in ([a_job["photo"]], [b_job["photo"], a_job["job"]["result"]["ad"]["id"]]):
        r = b.post(
            "/v1/jobs",
            json={"workflow": "homepage", "input": {"profile": {"store_name": "B"}, "images": images}},
        )
        error_of(r, 404, "ARTIFACT_NOT_FOUND")
    assert all_ids(b) == before  # no job was made


def test_another_tenants_checkpoint_id_is_not_found_in_ones_own_job(a, b, a_job, b_job) -> None:
    theirs = checkpoint_of(b, b_job["job"]["id"], "composite")["id"]
    mine = a_job["job"]["id"]
    before = all_ids(a)
    r = a.post(f"/v1/jobs/{mine}/branch", json={"checkpoint_id": theirs, "input": {"headline": "반값"}})
    error_of(r, 404, "CHECKPOINT_NOT_FOUND")
    error_of(a.get(f"/v1/jobs/{mine}/checkpoints/{theirs}"), 404, "CHECKPOINT_NOT_FOUND")
    assert all_ids(a) == before
    # and the other way round
    a_cp = checkpoint_of(a, mine, "composite")["id"]
    r = b.post(
        f"/v1/jobs/{b_job['job']['id']}/branch", json={"checkpoint_id": a_cp, "input": {"headline": "x"}}
    )
    error_of(r, 404, "CHECKPOINT_NOT_FOUND")


def test_head_of_another_tenants_artifact_is_404_without_its_size_or_type(a, b, a_job) -> None:
    url = f"/v1/artifacts/{a_job['job']['result']['ad']['id']}"
    owner, other = a.head(url), b.head(url)
    assert owner.status_code == 200 and owner.headers["content-type"] == "image/png"
    assert other.status_code == 404 and other.content == b"" and "etag" not in other.headers
    assert other.headers["content-type"].startswith("application/json")
    assert other.headers["content-length"] != owner.headers["content-length"]


# -- 3. bodies that are too big, too deep, not UTF-8 or not JSON -----------------------------------------

JSON = "application/json"
BODIES: dict[str, tuple[bytes, str]] = {
    "arrays-10000-deep": (
        b'{"workflow":"ad","input":{"headline":' + b"[" * 10_000 + b"]" * 10_000 + b"}}",
        JSON,
    ),
    "objects-10000-deep": (b'{"workflow":"ad","input":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001, JSON),
    "2-MB": (b'{"workflow":"ad","input":{"headline":"' + b"x" * 2 * 2**20 + b'"}}', JSON),
    "invalid-utf-8": (b'{"workflow":"ad","input":{"headline":"\xff\xfe\xc3("}}', JSON),
    "latin-1-charset": ('{"workflow":"ad","input":{"headline":"caf\xe9"}}'.encode("latin-1"), JSON),
    "truncated": (b'{"workflow":"ad","input":{"headline":', JSON),
    "top-level-array": (b'[{"workflow":"ad"}]', JSON),
    "top-level-null": (b"null", JSON),
    "a-5000-digit-number": (b'{"workflow":"ad","input":{"seed":' + b"9" * 5000 + b"}}", JSON),
    "nan": (b'{"workflow":"ad","input":{"product_image":"PHOTO","headline":"x","restyle":NaN}}', JSON),
    "infinity": (b'{"workflow":"ad","input":{"product_image":"PHOTO","headline":"x","restyle":1e999}}', JSON),
    "lone-surrogate": (b'{"workflow":"ad","input":{"product_image":"PHOTO","headline":"\\ud800"}}', JSON),
    "text-plain": (b'{"workflow":"ad","input":{"product_image":"PHOTO","headline":"x"}}', "text/plain"),
    "form-urlencoded": (
        b'{"workflow":"ad","input":{"product_image":"PHOTO","headline":"x"}}',
        "application/x-www-form-urlencoded",
    ),
    "form-fields": (b"workflow=ad&input=%7B%7D", "application/x-www-form-urlencoded"),
    "multipart-json": (
        b'--x\r\nContent-Disposition: form-data; name="workflow"\r\n\r\nad\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
    ),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("case", list(BODIES))
def test_a_bad_json_body_is_a_4xx_in_the_error_shape(server, a, a_job, b, case, chunked) -> None:
    data, content_type = BODIES[case]
    data = data.replace(b"PHOTO", a_job["photo"].encode())
    before = all_ids(a)
    for path in ("/v1/jobs", f"/v1/jobs/{a_job['job']['id']}/branch"):
        content: Any = iter([data[i : i + 65536] for i in range(0, len(data), 65536)]) if chunked else data
        r = a.post(path, content=content, headers={"content-type": content_type})
        err = refused(r)
        if case == "2-MB":
            assert (r.status_code, err["code"]) == (413, "REQUEST_TOO_LARGE"), err
        assert len(r.content) < 20_000  # the answer is short whatever came in
    assert all_ids(a) == before  # no job was made


def test_a_duplicated_key_in_json_is_refused_or_read_one_way(a, a_job) -> None:
    """Python's JSON reader keeps the last of duplicated keys. Whatever the server does with them, it is
    one reading (the job stored is the one its answer describes), never a 5xx."""
    photo = a_job["photo"]
    doubled = '{"workflow":"ad","input":{"product_image":"PHOTO","headline":"first","headline":"second"}}'
    doubled = doubled.replace("PHOTO", photo)
    r = a.post("/v1/jobs", content=doubled, headers={"content-type": JSON})
    if r.status_code != 202:
        refused(r)
        return
    job = wait_for(a, r.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    assert checkpoint_of(a, job["id"], "composite")["values"]["copy"]["headline"] == "second"
    assert a.delete(f"/v1/jobs/{job['id']}").status_code == 204
    # a duplicated workflow is read the same way: the last one names it
    r = a.post(
        "/v1/jobs",
        content='{"workflow":"ad","workflow":"nope","input":{}}',
        headers={"content-type": JSON},
    )
    error_of(r, 422, "INVALID_INPUT")


@pytest.mark.parametrize(
    "files,data",
    [
        ({"photo": ("p.png", BANANA, "image/png")}, None),  # the file under another name
        (None, {"file": "not a file"}),  # a text field named file
        (None, None),  # no field at all
    ],
    ids=["other-field-name", "text-field", "empty"],
)
def test_an_upload_without_its_file_field_is_422(a, files, data) -> None:
    kw: dict[str, Any] = {"files": files} if files else {}
    if data:
        kw["data"] = data
    if not files and not data:
        kw["content"] = b"--x--\r\n"
        kw["headers"] = {"content-type": "multipart/form-data; boundary=x"}
    r = a.post("/v1/artifacts", **kw)
    refused(r, {400: {"INVALID_INPUT"}, 422: {"INVALID_INPUT"}})


def test_a_multipart_body_that_is_no_multipart_is_a_4xx(a) -> None:
    for content_type, body in (
        ("multipart/form-data", b"no boundary"),
        ("multipart/form-data; boundary=x", b"--y\r\nnot ours\r\n--y--"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="file"'),
        ("application/json", b'{"file": "iVBORw0KGgo="}'),
    ):
        r = a.post("/v1/artifacts", content=body, headers={"content-type": content_type})
        refused(r, {400: {"INVALID_INPUT"}, 422: {"INVALID_INPUT", "INVALID_IMAGE"}})


# -- 4. 200 event streams opened and dropped -------------------------------------------------------------


def subscribers(live: LiveServer) -> list[str]:
    """The jobs some stream is following now (the server's event bus)."""
    return live.server.config.app.state.jobs.bus.jobs()


def drop_raw(live: LiveServer, key: str, job_id: str, n: int) -> list[bytes]:
    """`n` raw connections asking for the job's events, all opened before any is read; each read to its
    first bytes, then closed: half with a FIN, half with a reset."""
    with contextlib.ExitStack() as stack:
        socks = []
        for _ in range(n):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", live.port), timeout=30))
            s.sendall(
                f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            socks.append(s)
        firsts = [s.recv(64) for s in socks]
        for i, s in enumerate(socks):
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    return firsts


async def drop_httpx(live: LiveServer, key: str, job_id: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=live.base_url, headers=auth(key), timeout=60, limits=limits) as c:
        streams = await asyncio.gather(
            *(c.send(c.build_request("GET", f"/v1/jobs/{job_id}/events"), stream=True) for _ in range(n))
        )
        statuses = []
        for r in streams:
            statuses.append(r.status_code)
            async for _ in r.aiter_raw():
                break
        await asyncio.gather(*(r.aclose() for r in streams))
    return statuses


def open_and_drop(live: LiveServer, key: str, job_id: str, how: str, n: int = 200) -> int:
    """`n` streams of the job opened at once and dropped; how many were served. The others must have been
    refused for the key's stream cap (429 RATE_LIMITED), nothing else."""
    if how == "raw-sockets":
        firsts = drop_raw(live, key, job_id, n)
        statuses = [int(f.split(b" ")[1]) for f in firsts]
    else:
        statuses = asyncio.run(drop_httpx(live, key, job_id, n))
    assert set(statuses) <= {200, 429}, set(statuses)
    return statuses.count(200)


def streams_again(live: LiveServer, key: str, job_id: str) -> bool:
    with (
        httpx.Client(base_url=live.base_url, headers=auth(key), timeout=30) as fresh,
        fresh.stream("GET", f"/v1/jobs/{job_id}/events") as r,
    ):
        return r.status_code == 200


def still_answers(live: LiveServer, key: str, job_id: str) -> None:
    with httpx.Client(base_url=live.base_url, headers=auth(key), timeout=30) as fresh:
        assert fresh.get("/healthz").status_code == 200
        assert fresh.get(f"/v1/jobs/{job_id}").status_code == 200


@pytest.mark.parametrize("how", ["raw-sockets", "httpx-streams"])
def test_200_streams_of_a_finished_job_opened_and_dropped(server, a_job, how) -> None:
    live, keys = server
    job_id = a_job["job"]["id"]
    # each ends at once (the job is done), giving its slot back: most, maybe all, are served
    assert open_and_drop(live, keys["a"], job_id, how) >= live.settings.max_streams_per_key
    still_answers(live, keys["a"], job_id)
    wait_until(lambda: job_id not in subscribers(live), timeout=30, what="the dropped streams to be let go")
    wait_until(lambda: streams_again(live, keys["a"], job_id), timeout=30, what="the key's stream slots")


@pytest.mark.parametrize("how", ["raw-sockets", "httpx-streams"])
def test_200_streams_of_a_running_job_opened_and_dropped_are_let_go(server, a, a_job, how) -> None:
    """Streams of a job that is still running wait for events; dropped, each is noticed and let go."""
    live, keys = server
    with live.faults.gate.closed() as gate:
        r = a.post("/v1/jobs", json=ad_body(a_job["photo"], headline="스트림"))
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert gate.entered.wait(60)
        # all are open at once, and stay open while the job waits: the key's cap is served, the rest refused
        assert open_and_drop(live, keys["a"], job_id, how) == live.settings.max_streams_per_key
        still_answers(live, keys["a"], job_id)
        wait_until(lambda: job_id not in subscribers(live), timeout=30, what="the dropped streams to end")
        wait_until(lambda: streams_again(live, keys["a"], job_id), timeout=30, what="the key's stream slots")
        assert a.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert wait_for(a, job_id)["status"] == "cancelled"
    assert a.delete(f"/v1/jobs/{job_id}").status_code == 204


# -- 5. a burst of 1,000 submissions ---------------------------------------------------------------------


async def burst(live: LiveServer, key: str, photo: str, n: int = 1000, at_once: int = 50) -> list[Any]:
    limits = httpx.Limits(max_connections=at_once)
    async with httpx.AsyncClient(base_url=live.base_url, headers=auth(key), timeout=120, limits=limits) as c:
        gate = asyncio.Semaphore(at_once)

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await c.post("/v1/jobs", json=ad_body(photo, headline=f"세일 {i}"))

        return await asyncio.gather(*(one(i) for i in range(n)))


async def cancel_all(live: LiveServer, key: str, ids: list[str]) -> list[int]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=live.base_url, headers=auth(key), timeout=120, limits=limits) as c:
        gate = asyncio.Semaphore(50)

        async def one(job_id: str) -> int:
            async with gate:
                return (await c.post(f"/v1/jobs/{job_id}/cancel")).status_code

        return await asyncio.gather(*(one(i) for i in ids))


def test_a_burst_of_1000_submissions_is_each_stored_or_refused_with_a_code(server) -> None:
    live, keys = server
    with httpx.Client(base_url=live.base_url, headers=auth(keys["burst"]), timeout=60) as c:
        photo = upload(c)
        with live.faults.gate.closed():
            answers = asyncio.run(burst(live, keys["burst"], photo))
            accepted = [r.json()["id"] for r in answers if r.status_code == 202]
            for r in answers:
                if r.status_code != 202:
                    refused(r, {503: {"QUEUE_FULL"}, 429: {"QUOTA_EXCEEDED", "RATE_LIMITED"}})
                    assert int(r.headers["retry-after"]) > 0
            assert MAX_QUEUE <= len(accepted) < 1000, len(accepted)  # the queue filled, then refused
            assert len(set(accepted)) == len(accepted)
            listed = all_ids(c)
            assert len(listed) == len(set(listed)) and set(listed) == set(accepted)  # none lost, none extra
            assert sorted(all_ids(c, status="queued") + all_ids(c, status="running")) == sorted(accepted)
            assert set(asyncio.run(cancel_all(live, keys["burst"], accepted))) == {202}
        for job_id in accepted:
            assert wait_for(c, job_id, timeout=120)["status"] == "cancelled"


# -- 6. HTML and script in every text field --------------------------------------------------------------


class Markup(HTMLParser):
    """The elements, attributes and text of a document, as a browser's tokenizer reads them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def shows(self, text: str) -> bool:
        """Whether `text` is in the document as text (line breaks and spacing aside)."""
        return "".join(text.split()) in "".join("".join(self.text).split())


def assert_inert(html: str, where: str) -> Markup:
    doc = Markup(html)
    assert "script" not in doc.tags, (where, html[:2000])
    assert not [k for k, _ in doc.attrs if k.lower().startswith("on")], (where, doc.attrs)
    assert ("src", "x") not in doc.attrs, where
    lowered = html.lower()
    assert "<script" not in lowered and "<img src=x" not in lowered, where
    return doc


def test_html_in_every_text_field_of_an_ad_is_text_in_its_layer(a, a_job) -> None:
    body = ad_body(a_job["photo"], headline=SCRIPT, subline=SCRIPT, cta=SCRIPT, background_prompt=SCRIPT)
    r = a.post("/v1/jobs", json=body)
    if r.status_code != 202:  # refused at the door with a code is safe too
        refused(r)
        return
    job = wait_for(a, r.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job
    html = checkpoint_of(a, job["id"], "code")["values"]["text_layer_html"]
    doc = assert_inert(html, "text layer")
    assert doc.shows(SCRIPT), html[:2000]  # the headline is drawn as the characters it is
    assert a.delete(f"/v1/jobs/{job['id']}").status_code == 204


@pytest.mark.parametrize("field", ["font", "size", "text_position", "product_image"])
def test_html_in_an_ad_field_that_names_something_is_refused_with_a_code(a, a_job, field) -> None:
    body = ad_body(a_job["photo"], **{field: SCRIPT})
    err = error_of(a.post("/v1/jobs", json=body), 422, "INVALID_INPUT")
    assert field in err["details"].get("fields", []) or field in err["message"], err


def test_html_in_every_profile_field_is_text_on_every_page_of_the_site(a, a_job) -> None:
    profile = {field: SCRIPT for field in PROFILE_TEXT} | {"phone_number": "02-123-4567"}
    body = {
        "workflow": "homepage",
        "input": {"profile": profile, "images": [a_job["photo"]], "style": SCRIPT},
    }
    r = a.post("/v1/jobs", json=body)
    if r.status_code != 202:
        refused(r)
        return
    job = wait_for(a, r.json()["id"], timeout=240)
    assert job["status"] == "succeeded", job
    site = a.get(job["result"]["site_zip"]["url"])
    assert site.status_code == 200
    with zipfile.ZipFile(io.BytesIO(site.content)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    pages = {n: data.decode() for n, data in files.items() if n.endswith(".html")}
    assert "site/index.html" in pages, sorted(files)
    for name, html in pages.items():
        assert_inert(html, name)
    for name, data in files.items():  # a stylesheet or script that took the style hint raw
        if name.endswith((".css", ".js", ".svg")):
            text = data.decode(errors="replace").lower()
            assert "<script" not in text and "</style" not in text and "onerror" not in text, name
    assert Markup(pages["site/index.html"]).shows(SCRIPT)  # the store's name, as its owner typed it
    assert a.delete(f"/v1/jobs/{job['id']}").status_code == 204


def test_html_in_the_phone_number_is_refused_naming_the_field(a) -> None:
    profile = {"store_name": "Blue Door", "phone_number": SCRIPT[:40]}
    err = error_of(
        a.post("/v1/jobs", json={"workflow": "homepage", "input": {"profile": profile}}), 422, "INVALID_INPUT"
    )
    assert "profile.phone_number" in err["details"]["fields"], err


# -- 7. schemathesis with a valid key --------------------------------------------------------------------


def test_schemathesis_with_a_valid_key_finds_no_server_errors(server, a_job) -> None:
    """test_api.py's fuzzing, authenticated as tenant A: the requests get past the key check to the
    routes themselves. Never a 5xx (503 MODEL_UNAVAILABLE aside: no CLIP weights here)."""
    live, keys = server
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    operations = [result.ok() for result in schema.exclude(path_regex=r"/events$").get_all_operations()]
    assert len(operations) >= 15
    failures: list[str] = []
    statuses: list[int] = []
    with requests.Session() as session:
        for op in operations:
            args = (session, keys["a"], a_job["job"]["id"], failures, statuses)
            fuzz(op, schemathesis.GenerationMode.POSITIVE, *args)
            if not op.path_parameters and (op.query or op.body):
                fuzz(op, schemathesis.GenerationMode.NEGATIVE, *args)
    assert not failures, "\n\n".join(failures[:10])
    assert statuses.count(401) < len(statuses) / 10, collections.Counter(statuses)  # past the door


def fuzz(
    op: Any,
    mode: Any,
    session: requests.Session,
    key: str,
    job_id: str,
    failures: list[str],
    statuses: list[int],
) -> None:
    turn = itertools.count()

    @hypothesis.settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        # now and then A's job (never to DELETE: it is what the module checks is unchanged)
        if (
            "job_id" in (case.path_parameters or {})
            and case.method.upper() != "DELETE"
            and next(turn) % 3 == 0
        ):
            case.path_parameters["job_id"] = job_id
        response = case.call(session=session, headers=auth(key), timeout=30)
        unavailable = response.status_code == 503 and "MODEL_UNAVAILABLE" in response.text
        if response.status_code >= 500 and not unavailable:
            failures.append(
                f"{op.label}: {response.status_code}\n{case.as_curl_command()}\n{response.text[:300]}"
            )
        # the key is good: a 401 means the fuzzing never got past the door, unless the negative case is a
        # mangled key header (schemathesis then leaves the valid Authorization out on purpose)
        if response.status_code == 401 and mode == schemathesis.GenerationMode.POSITIVE:
            failures.append(f"{op.label}: 401 with a valid key\n{case.as_curl_command()}")
        statuses.append(response.status_code)

    run()


# -- the end ---------------------------------------------------------------------------------------------


def test_at_the_end_the_finished_job_and_its_files_are_as_they_were(server, a, a_job, at_start) -> None:
    live, _ = server
    now = stored_state(live, a, a_job)
    assert now["job"] == at_start["job"] and now["job"]["status"] == "succeeded"
    assert now["checkpoints"] == at_start["checkpoints"]
    assert now["served"] == at_start["served"] == now["on_disk"]
    assert a.get("/healthz").status_code == 200
