"""The REST job service as a client sees it: real HTTP to the real app, database, runner and models.

One live server per backend (SQLite in a temp dir, PostgreSQL in a fresh database) serves the whole
module, with one job at a time so queued jobs stay queued while a held one runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from PIL import Image

from service.settings import Settings
from tests.integration.api_support import (
    AD_NODES,
    Faults,
    LiveServer,
    count_jobs,
    error_of,
    fresh_database,
    postgres_reachable,
    raw_get,
    sse_events,
    wait_for,
)
from tests.support import PHOTOS, png_bytes

pytestmark = pytest.mark.integration

BANANA = (PHOTOS / "banana.png").read_bytes()  # 285 KB: under the upload limit below
FISH = (PHOTOS / "dried_fish_plate.png").read_bytes()  # 1 MB: over it
MAX_UPLOAD = 300_000
STEP2 = ["analyze", "plan", "design", "code", "render"]


class Live:
    def __init__(self, server: LiveServer, http: httpx.Client, backend: str) -> None:
        self.server, self.http, self.backend = server, http, backend
        self.faults = server.faults

    def upload(self, data: bytes = BANANA, name: str = "banana.png") -> dict[str, Any]:
        r = self.http.post("/v1/artifacts", files={"file": (name, data, "image/png")})
        assert r.status_code == 201, r.text
        return r.json()

    def submit(self, photo_id: str, **inp: Any) -> dict[str, Any]:
        r = self.http.post(
            "/v1/jobs",
            json={"workflow": "ad", "input": {"product_image": photo_id, "headline": "달콤한 바나나", **inp}},
        )
        assert r.status_code == 202, r.text
        return r.json()

    def held_job(self, photo_id: str, **inp: Any) -> dict[str, Any]:
        """Submit a job and return once it is running, held inside `background` (the gate must be closed)."""
        job = self.submit(photo_id, **inp)
        assert self.faults.gate.entered.wait(60), "the job never reached its background node"
        return self.http.get(f"/v1/jobs/{job['id']}").json()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request, tmp_path_factory) -> Iterator[Live]:
    settings = {
        "data_dir": tmp_path_factory.mktemp(f"api-{request.param}"),
        "database_url": None,  # explicit, so an ADGRAPH_DATABASE_URL in the environment changes nothing
        "checkpoint_url": None,
        "max_concurrent_jobs": 1,  # queued jobs stay queued while a held one runs
        "lease_s": 6.0,
        "max_upload_bytes": MAX_UPLOAD,
    }
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            if not postgres_reachable():
                pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
            settings["database_url"] = stack.enter_context(fresh_database())
        server = LiveServer(Settings(**settings), Faults())
        # checkpoints follow a PostgreSQL database URL
        assert (server.settings.checkpoints == server.settings.database_url) == (
            request.param == "postgresql"
        )
        server.start()
        stack.callback(server.stop)
        http = stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30))
        yield Live(server, http, request.param)


@pytest.fixture(scope="module")
def photo(live: Live) -> dict[str, Any]:
    return live.upload()


@pytest.fixture(scope="module")
def done_job(live: Live, photo) -> dict[str, Any]:
    """One finished ad job, and the 202 answer that queued it."""
    submitted = live.submit(
        photo["id"],
        subline="오늘 아침 도착",
        cta="주문하기",
        background_prompt="yellow pastel",
        size="1200x628",
        seed=3,
    )
    return {"submitted": submitted, "job": wait_for(live.http, submitted["id"])}


def png(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG"
    im.load()
    return im


def by_attempt(job: dict[str, Any], attempt: int) -> list[str]:
    return [n["name"] for n in job["nodes"] if n["attempt"] == attempt]


def checkpoint_nodes(http: httpx.Client, job_id: str) -> list[str]:
    r = http.get(f"/v1/jobs/{job_id}/checkpoints")
    assert r.status_code == 200, r.text
    return [c["node"] for c in r.json() if not c["node"].startswith("__")]


# -- 1. lifecycle --------------------------------------------------------------------------------------


def test_upload_then_an_ad_job_from_queued_to_succeeded_with_downloadable_images(
    live, photo, done_job
) -> None:
    http = live.http
    assert photo == {
        "id": hashlib.sha256(BANANA).hexdigest(),
        "mime": "image/png",
        "width": 800,
        "height": 705,
        "bytes": len(BANANA),
    }
    assert live.upload() == photo  # the same bytes get the same id
    got = http.get(f"/v1/artifacts/{photo['id']}")
    assert got.status_code == 200 and got.content == BANANA
    assert got.headers["content-type"] == "image/png"
    assert "immutable" in got.headers["cache-control"] and "max-age=31536000" in got.headers["cache-control"]

    submitted, job = done_job["submitted"], done_job["job"]
    assert submitted["status"] == "queued" and uuid.UUID(submitted["id"])
    assert submitted["progress"]["percent"] == 0 and submitted["result"] is None
    assert job["status"] == "succeeded", job
    assert job["progress"]["percent"] == 100 and job["error"] is None and job["parent"] is None
    assert [n["name"] for n in job["nodes"]] == AD_NODES
    assert all(n["status"] == "succeeded" and n["seconds"] >= 0 and n["attempt"] == 1 for n in job["nodes"])
    assert len(json.dumps(job)) < 8_000  # references, never image bytes
    assert set(job["result"]) == {"cutout", "scene", "ad"}
    # which backend shaped each image (the embedded ones here: no GPU weights configured)
    assert job["result"]["cutout"]["backends"] == {"segment": "u2netp"}
    embedded = {"segment": "u2netp", "background": "studio", "analyze": "stats"}
    assert job["result"]["ad"]["backends"] == embedded
    images = {}
    for key, ref in job["result"].items():
        assert ref["url"] == f"/v1/artifacts/{ref['id']}" and ref["mime"] == "image/png"
        r = http.get(ref["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert hashlib.sha256(r.content).hexdigest() == ref["id"]
        images[key] = png(r.content)
    assert images["cutout"].mode == "RGBA" and images["cutout"].size == (800, 705)
    assert images["scene"].size == images["ad"].size == (1200, 628)
    assert images["scene"].tobytes() != images["ad"].convert(images["scene"].mode).tobytes()  # the text is on


def test_listing_filters_by_status_and_workflow_and_pages_through_every_job_once(
    live, photo, done_job
) -> None:
    http = live.http
    with live.faults.gate.closed():
        running = live.held_job(photo["id"], seed=11)
        queued = [live.submit(photo["id"], seed=s)["id"] for s in (12, 13)]

        def ids(**params: Any) -> list[str]:
            r = http.get("/v1/jobs", params={"limit": 200, **params})
            assert r.status_code == 200, r.text
            assert r.json()["next_cursor"] is None
            return [j["id"] for j in r.json()["jobs"]]

        assert ids(status="running") == [running["id"]]
        assert ids(status="queued") == queued[::-1]  # newest first
        assert done_job["job"]["id"] in ids(status="succeeded")
        everyone = ids()
        assert len(everyone) >= 4 and ids(workflow="ad") == everyone
        assert ids(workflow="homepage") == []

        pages, cursor, seen = 0, None, []
        while True:
            r = http.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["jobs"]) <= 2
            seen += [j["id"] for j in page["jobs"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == everyone and pages == (len(everyone) + 1) // 2

        error_of(http.get("/v1/jobs", params={"status": "done"}), 422, "INVALID_INPUT")
        error_of(http.get("/v1/jobs", params={"workflow": "a\x00d"}), 422, "INVALID_INPUT")
        error_of(http.get("/v1/jobs", params={"cursor": "not-a-cursor"}), 422, "INVALID_INPUT")
        error_of(http.get("/v1/jobs", params={"limit": 0}), 422, "INVALID_INPUT")
        for job_id in [*queued, running["id"]]:
            assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert wait_for(http, running["id"])["status"] == "cancelled"
    assert {running["id"], *queued} <= set(ids(status="cancelled"))


# -- 2. events -----------------------------------------------------------------------------------------


def test_events_stream_every_node_in_order_live_and_a_reconnect_gets_only_the_rest(live, photo) -> None:
    http = live.http
    gate = live.faults.gate
    with gate.closed():
        job = live.held_job(photo["id"], seed=21)
        events = []
        with http.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            for ev in sse_events(r):
                events.append(ev)
                if ev["event"] == "node_started" and ev["data"]["node"] == "background":
                    gate.open()  # the rest arrives live, while the stream is open
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids))
    nodes = [
        (e["event"], e["data"].get("node") or e["data"].get("name")) for e in events if "node" in e["event"]
    ]
    assert nodes == [(kind, n) for n in AD_NODES for kind in ("node_started", "node_finished")]
    finished = [e for e in events if e["event"] == "node_finished"]
    assert all(e["data"]["status"] == "succeeded" and e["data"]["seconds"] >= 0 for e in finished)
    percents = [e["data"]["progress"]["percent"] for e in finished]
    assert percents == sorted(percents) and percents[0] > 0 and percents[-1] <= 99
    assert events[-1]["event"] == "job_finished" and events[-1]["data"]["status"] == "succeeded"
    assert [e["event"] for e in events].count("job_finished") == 1

    mid = next(e["id"] for e in events if e["event"] == "node_finished" and e["data"]["name"] == "composite")
    with http.stream("GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(mid)}) as r:
        rest = list(sse_events(r))
    assert rest == [e for e in events if e["id"] > mid]
    # composite's checkpoint is on the record before the next node starts
    assert rest[0]["event"] == "checkpoint" and rest[0]["data"]["node"] == "composite"
    assert rest[1]["event"] == "node_started" and rest[1]["data"]["node"] == "analyze"

    # an EventSource reconnects after the stream ends; with everything already seen it gets nothing, at once
    for seen in (events[-1]["id"], 10**19):
        with http.stream(
            "GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(seen)}, timeout=5
        ) as r:
            assert r.status_code == 200 and list(sse_events(r)) == []
    with http.stream("GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "-1"}) as r:
        assert list(sse_events(r)) == events  # not an id: from the start


# -- 3. cancel -----------------------------------------------------------------------------------------


def test_cancel_a_queued_job_at_once_and_a_running_one_at_a_node_boundary_then_resume_it(live, photo) -> None:
    http = live.http
    with live.faults.gate.closed():
        running = live.held_job(photo["id"], seed=31)
        assert running["status"] == "running"
        queued = [live.submit(photo["id"], seed=s)["id"] for s in (32, 33)]

        r = http.post(f"/v1/jobs/{queued[0]}/cancel")
        assert r.status_code == 202 and r.json()["status"] == "cancelled"
        assert http.get(f"/v1/jobs/{queued[0]}").json()["status"] == "cancelled"
        error_of(http.post(f"/v1/jobs/{queued[0]}/cancel"), 409, "JOB_NOT_CANCELLABLE")
        with http.stream("GET", f"/v1/jobs/{queued[0]}/events") as s:
            events = list(sse_events(s))
        assert events[-1]["event"] == "job_finished" and events[-1]["data"]["status"] == "cancelled"

        r = http.post(f"/v1/jobs/{running['id']}/cancel")
        assert r.status_code == 202 and r.json()["status"] in ("running", "cancelled")
    cancelled = wait_for(http, running["id"])
    assert cancelled["status"] == "cancelled" and cancelled["result"] is None
    assert [n["name"] for n in cancelled["nodes"]] == ["segment", "background"]  # stopped at the boundary
    assert all(n["status"] == "succeeded" for n in cancelled["nodes"])
    assert checkpoint_nodes(http, running["id"]) == ["segment", "background"]
    assert wait_for(http, queued[1])["status"] == "succeeded"  # the queue went on
    assert http.get(f"/v1/jobs/{queued[0]}").json()["nodes"] == []  # the cancelled queued job never ran

    r = http.post(f"/v1/jobs/{running['id']}/resume")
    assert r.status_code == 202 and r.json()["status"] == "queued", r.text
    resumed = wait_for(http, running["id"])
    assert resumed["status"] == "succeeded", resumed
    assert by_attempt(resumed, 1) == ["segment", "background"]
    assert by_attempt(resumed, 2) == AD_NODES[2:]  # nothing that had finished ran again
    assert checkpoint_nodes(http, running["id"]) == AD_NODES
    error_of(http.post(f"/v1/jobs/{running['id']}/cancel"), 409, "JOB_NOT_CANCELLABLE")


# -- 4. resume after a failure -------------------------------------------------------------------------


def test_a_failed_render_keeps_the_checkpoints_and_resume_runs_only_render(live, photo, done_job) -> None:
    http = live.http
    assert live.faults.renderer is not None
    live.faults.renderer.fail(1)
    with live.faults.gate.closed():
        job = live.held_job(photo["id"], seed=41)
        error_of(http.post(f"/v1/jobs/{job['id']}/resume"), 409, "JOB_NOT_RESUMABLE")  # it is running
    failed = wait_for(http, job["id"])
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "RENDER_FAILED" and "renderer" in failed["error"]["message"]
    assert failed["result"] is None and failed["progress"]["percent"] < 100
    assert [(n["name"], n["status"]) for n in failed["nodes"]] == [
        *((n, "succeeded") for n in AD_NODES[:-1]),
        ("render", "failed"),
    ]
    assert checkpoint_nodes(http, job["id"]) == AD_NODES[:-1]
    error_of(http.post(f"/v1/jobs/{done_job['job']['id']}/resume"), 409, "JOB_NOT_RESUMABLE")  # succeeded

    r = http.post(f"/v1/jobs/{job['id']}/resume")
    assert r.status_code == 202 and r.json()["status"] == "queued" and r.json()["error"] is None
    resumed = wait_for(http, job["id"])
    assert resumed["status"] == "succeeded" and resumed["error"] is None, resumed
    assert by_attempt(resumed, 2) == ["render"]
    assert png(http.get(resumed["result"]["ad"]["url"]).content).size == (1080, 1080)
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as s:
        ends = [e["data"] for e in sse_events(s) if e["event"] == "job_finished"]
    assert [e["status"] for e in ends] == ["failed", "succeeded"]
    assert ends[0]["error"]["code"] == "RENDER_FAILED"


# -- 5. checkpoints and branches -----------------------------------------------------------------------


def test_checkpoints_list_every_node_with_previews_and_show_their_state(live, done_job) -> None:
    http = live.http
    job = done_job["job"]
    r = http.get(f"/v1/jobs/{job['id']}/checkpoints")
    assert r.status_code == 200, r.text
    cps = [c for c in r.json() if not c["node"].startswith("__")]
    assert [c["node"] for c in cps] == AD_NODES
    assert [c["step"] for c in cps] == sorted(c["step"] for c in cps)
    with_preview = {c["node"]: c["preview"] for c in cps if c["preview"]}
    assert set(with_preview) == {"segment", "background", "composite", "render"}
    assert with_preview["render"]["id"] == job["result"]["ad"]["id"]
    assert with_preview["composite"]["id"] == job["result"]["scene"]["id"]
    background = http.get(with_preview["background"]["url"])
    assert background.status_code == 200
    assert Image.open(io.BytesIO(background.content)).size == (1200, 628)

    composite = next(c for c in cps if c["node"] == "composite")
    r = http.get(f"/v1/jobs/{job['id']}/checkpoints/{composite['id']}")
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["id"] == composite["id"] and detail["node"] == "composite" and detail["next"] == ["analyze"]
    values = detail["values"]
    assert values["scene"]["id"] == job["result"]["scene"]["id"]
    assert values["copy"] == {"headline": "달콤한 바나나", "subline": "오늘 아침 도착", "cta": "주문하기"}
    assert values["background_prompt"] == "yellow pastel" and values["size"] == "1200x628"
    assert "ad" not in values and "text_plan" not in values  # nothing from later nodes


def test_branches_from_several_checkpoints_rerun_only_what_changed_and_leave_the_source_alone(
    live, done_job
) -> None:
    http = live.http
    src = done_job["job"]
    src_before = http.get(f"/v1/jobs/{src['id']}").json()
    src_checkpoints = http.get(f"/v1/jobs/{src['id']}/checkpoints").json()
    jobs_before = count_jobs(http)
    cp = {c["node"]: c["id"] for c in src_checkpoints}

    # same scene, new copy: only the text layer runs again
    r = http.post(
        f"/v1/jobs/{src['id']}/branch", json={"from_node": "composite", "input": {"headline": "반값 세일"}}
    )
    assert r.status_code == 202, r.text
    new_copy = r.json()
    assert new_copy["id"] != src["id"] and new_copy["status"] == "queued"
    assert new_copy["parent"] == {"job_id": src["id"], "checkpoint_id": cp["composite"]}

    # a new background prompt from segment: the backdrop is made again
    r = http.post(
        f"/v1/jobs/{src['id']}/branch",
        json={"from_node": "segment", "input": {"background_prompt": "navy velvet"}},
    )
    assert r.status_code == 202, r.text
    new_scene = r.json()

    # by checkpoint id: from analyze with a new subline, from plan on
    r = http.post(
        f"/v1/jobs/{src['id']}/branch", json={"checkpoint_id": cp["analyze"], "input": {"subline": "오늘만"}}
    )
    assert r.status_code == 202, r.text
    from_analyze = r.json()
    assert from_analyze["parent"] == {"job_id": src["id"], "checkpoint_id": cp["analyze"]}

    # an input the checkpoint already used is refused, naming where to branch from
    refused = error_of(
        http.post(
            f"/v1/jobs/{src['id']}/branch",
            json={"from_node": "composite", "input": {"background_prompt": "x"}},
        ),
        422,
        "INVALID_INPUT",
    )
    assert "background_prompt" in refused["message"] and "segment" in refused["message"]
    for refused_body in (
        {"from_node": "paint"},  # no such node
        {"from_node": "plan", "checkpoint_id": cp["plan"]},  # one or the other
        {"from_node": "plan", "input": {"size": "1080x1920"}},  # not a branch input
        {"from_node": "plan", "input": {"cta": "x" * 61}},  # too long
        {"from_node": "composite", "input": {"headline": "반값\x00세일"}},  # no U+0000 in any database
        {"checkpoint_id": cp["__input__"]},  # before any node ran: nothing to branch from
        {"checkpoint_id": cp["__start__"]},
    ):
        error_of(http.post(f"/v1/jobs/{src['id']}/branch", json=refused_body), 422, "INVALID_INPUT")

    a, b, c = (wait_for(http, j["id"]) for j in (new_copy, new_scene, from_analyze))
    assert a["status"] == b["status"] == c["status"] == "succeeded", (a, b, c)
    assert [n["name"] for n in a["nodes"]] == STEP2
    assert a["result"]["scene"]["id"] == src["result"]["scene"]["id"]
    assert a["result"]["cutout"]["id"] == src["result"]["cutout"]["id"]
    assert a["result"]["ad"]["id"] != src["result"]["ad"]["id"]
    assert [n["name"] for n in b["nodes"]] == AD_NODES[1:]
    assert b["result"]["cutout"]["id"] == src["result"]["cutout"]["id"]
    assert b["result"]["scene"]["id"] != src["result"]["scene"]["id"]
    assert [n["name"] for n in c["nodes"]] == STEP2[1:]
    assert c["result"]["ad"]["id"] not in (src["result"]["ad"]["id"], a["result"]["ad"]["id"])
    branched = http.get(f"/v1/jobs/{a['id']}/checkpoints/{checkpoint_id(http, a['id'], 'plan')}").json()
    assert branched["values"]["copy"]["headline"] == "반값 세일"
    assert branched["values"]["copy"]["subline"] == "오늘 아침 도착"  # unchanged inputs carried over

    assert count_jobs(http) == jobs_before + 3  # the refused branches made no job
    assert http.get(f"/v1/jobs/{src['id']}").json() == src_before
    assert http.get(f"/v1/jobs/{src['id']}/checkpoints").json() == src_checkpoints


def checkpoint_id(http: httpx.Client, job_id: str, node: str) -> str:
    return next(c["id"] for c in http.get(f"/v1/jobs/{job_id}/checkpoints").json() if c["node"] == node)


# -- 6. bad requests -----------------------------------------------------------------------------------


def test_bad_uploads_are_refused_with_a_code(live) -> None:
    http = live.http

    def upload(data: bytes, name: str = "x.png") -> httpx.Response:
        return http.post("/v1/artifacts", files={"file": (name, data, "image/png")})

    error_of(upload(b"just some text, not an image", "notes.txt"), 422, "INVALID_IMAGE")
    error_of(upload(BANANA[: len(BANANA) // 2]), 422, "INVALID_IMAGE")
    error_of(upload(b""), 422, "INVALID_IMAGE")
    gif = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(gif, format="GIF")
    error_of(upload(gif.getvalue(), "red.gif"), 422, "INVALID_IMAGE")
    error_of(http.post("/v1/artifacts", data={"other": "field"}), 422, "INVALID_INPUT")  # no file at all

    too_big = error_of(upload(FISH), 413, "IMAGE_TOO_LARGE")
    assert too_big["details"]["limit_bytes"] == MAX_UPLOAD
    boundary = "adgraphboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="fish.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it streams in
        yield head
        for i in range(0, len(FISH), 32_768):
            yield FISH[i : i + 32_768]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = http.post(
        "/v1/artifacts",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "content-length" not in r.request.headers
    error_of(r, 413, "IMAGE_TOO_LARGE")

    # a streamed upload under the limit goes through
    small = png_bytes(Image.new("RGB", (64, 48), (10, 200, 30)))
    r = http.post(
        "/v1/artifacts",
        content=iter([head, small, f"\r\n--{boundary}--\r\n".encode()]),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["id"] == hashlib.sha256(small).hexdigest() and (stored["width"], stored["height"]) == (
        64,
        48,
    )


def test_unknown_and_malformed_ids_and_path_tricks_never_reach_outside_the_store(live, done_job) -> None:
    http = live.http
    job_id = done_job["job"]["id"]
    error_of(http.get(f"/v1/jobs/{uuid.uuid4()}"), 404, "JOB_NOT_FOUND")
    error_of(http.get(f"/v1/jobs/{uuid.uuid4()}/checkpoints"), 404, "JOB_NOT_FOUND")
    error_of(http.post(f"/v1/jobs/{uuid.uuid4()}/cancel"), 404, "JOB_NOT_FOUND")
    error_of(http.post(f"/v1/jobs/{uuid.uuid4()}/resume"), 404, "JOB_NOT_FOUND")
    error_of(http.post(f"/v1/jobs/{uuid.uuid4()}/branch", json={"from_node": "plan"}), 404, "JOB_NOT_FOUND")
    error_of(http.get(f"/v1/jobs/{uuid.uuid4()}/events"), 404, "JOB_NOT_FOUND")
    error_of(http.get(f"/v1/jobs/{job_id}/checkpoints/{uuid.uuid4()}"), 404, "CHECKPOINT_NOT_FOUND")
    error_of(
        http.post(f"/v1/jobs/{job_id}/branch", json={"checkpoint_id": str(uuid.uuid4())}),
        404,
        "CHECKPOINT_NOT_FOUND",
    )
    error_of(http.get(f"/v1/artifacts/{'0' * 64}"), 404, "ARTIFACT_NOT_FOUND")

    for bad in ("not-a-job", "1" * 63, "' OR 1=1 --"):
        error_of(http.get(f"/v1/jobs/{bad}"), 422, "INVALID_INPUT")
    for bad in ("a" * 63, "A" * 64, "g" * 64, "0" * 64 + ".png", "..."):
        error_of(http.get(f"/v1/artifacts/{bad}"), 422, "INVALID_INPUT")

    # a store file's own relative path, and traversals: never a file
    for tricky in (
        "/v1/artifacts/..",
        "/v1/artifacts/%2e%2e",
        "/v1/artifacts/..%2F..%2Fetc%2Fpasswd",
        "/v1/artifacts/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v1/artifacts/..%5C..%5Cetc%5Cpasswd",
        f"/v1/artifacts/{done_job['job']['result']['ad']['id'][:2]}%2F{done_job['job']['result']['ad']['id'][2:]}",
        "/v1/jobs/..%2F..%2F..%2Fetc%2Fpasswd",
    ):
        r = http.get(tricky)
        assert r.status_code in (404, 422), (tricky, r.status_code)
        error_of(r, r.status_code, "NOT_FOUND" if r.status_code == 404 else "INVALID_INPUT")
        assert b"root:" not in r.content
    raw = raw_get(live.server.port, "/v1/artifacts/../../../../etc/passwd")  # no client normalising it
    assert raw.split(b" ", 2)[1] in (b"404", b"422") and b"root:" not in raw, raw[:300]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workflow": "ad", "input": {"headline": "   "}}, "headline"),
        ({"workflow": "ad", "input": {"headline": "바나\x00나"}}, "headline"),  # U+0000: not in PostgreSQL
        ({"workflow": "ad", "input": {"headline": "가" * 121}}, "headline"),
        ({"workflow": "ad", "input": {"size": "640x480"}}, "size"),
        ({"workflow": "ad", "input": {"text_position": "diagonal"}}, "text_position"),
        ({"workflow": "ad", "input": {"seed": -1}}, "seed"),
        ({"workflow": "ad", "input": {"colour": "red"}}, "colour"),
        ({"workflow": "ad", "input": {"product_image": "../../etc/passwd"}}, "product_image"),
        ({"workflow": "ad", "input": {"font": "Comic Sans Nowhere"}}, "font"),
        ({"workflow": "homepage", "input": {}}, None),
        ({"workflow": "ad", "input": {}, "priority": 99}, "priority"),  # -10..10
        ({"workflow": "ad", "input": {}, "urgent": True}, "urgent"),  # no such field
        ({"input": {}}, "workflow"),
    ],
)
def test_invalid_job_input_is_refused_before_any_job_exists(live, photo, body, field) -> None:
    http = live.http
    before = count_jobs(http)
    if "input" in body and body.get("workflow") == "ad":
        body = {**body, "input": {"product_image": photo["id"], "headline": "바나나", **body["input"]}}
    err = error_of(http.post("/v1/jobs", json=body), 422, "INVALID_INPUT")
    if field:
        assert field in err["message"] or any(field in f for f in err["details"].get("fields", [])), err
    assert count_jobs(http) == before


def test_other_malformed_job_requests_and_the_server_keeps_serving(live, photo, done_job) -> None:
    http = live.http
    before = count_jobs(http)
    error_of(
        http.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}),
        422,
        "INVALID_INPUT",
    )
    error_of(http.post("/v1/jobs", json=["ad"]), 422, "INVALID_INPUT")
    error_of(http.post("/v1/jobs", json={"workflow": "ad", "input": "banana"}), 422, "INVALID_INPUT")
    missing = {"workflow": "ad", "input": {"product_image": "0" * 64, "headline": "바나나"}}
    error_of(http.post("/v1/jobs", json=missing), 404, "ARTIFACT_NOT_FOUND")
    error_of(http.put(f"/v1/jobs/{done_job['job']['id']}"), 405, "METHOD_NOT_ALLOWED")
    error_of(http.get("/v1/nothing-here"), 404, "NOT_FOUND")
    # a JSON body is small: a huge one is refused as it streams in, declared or not
    huge = {"workflow": "ad", "input": {"product_image": photo["id"], "headline": "x" * (2 * 2**20)}}
    too_big = error_of(http.post("/v1/jobs", json=huge), 413, "REQUEST_TOO_LARGE")
    assert too_big["details"]["limit_bytes"] == 2**20
    streamed = iter([b'{"workflow": "ad", "input": {"headline": "', b"x" * 2**16 * 20, b'"}}'])
    r = http.post("/v1/jobs", content=streamed, headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    error_of(r, 413, "REQUEST_TOO_LARGE")
    assert count_jobs(http) == before

    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    job = done_job["job"]
    assert http.get(f"/v1/jobs/{job['id']}").json() == job
    for ref in job["result"].values():
        assert hashlib.sha256(http.get(ref["url"]).content).hexdigest() == ref["id"]
    assert http.get(f"/v1/artifacts/{photo['id']}").content == BANANA


# -- 7. meta -------------------------------------------------------------------------------------------


def test_workflows_fonts_system_metrics_and_openapi(live, done_job) -> None:
    http = live.http
    assert http.get("/v1/workflows").json() == [
        {"name": "ad", "nodes": AD_NODES},
        {"name": "homepage", "nodes": ["plan", "design", "code", "render"]},
    ]
    ad = http.get("/v1/workflows/ad").json()
    assert ad["nodes"] == AD_NODES
    schema = ad["input_schema"]
    assert {"product_image", "headline", "background_prompt", "size", "font"} <= set(schema["properties"])
    assert {"product_image", "headline"} <= set(schema["required"])
    path = ["__start__", *AD_NODES, "__end__"]
    assert sorted(map(tuple, ad["edges"])) == sorted(zip(path, path[1:], strict=False))
    error_of(http.get("/v1/workflows/newsletter"), 404, "NOT_FOUND")

    fonts = http.get("/v1/fonts").json()
    nanum = {f["family"] for f in fonts if f["family"].startswith("Nanum") and f["hangul"]}
    assert nanum, fonts

    system = http.get("/v1/system").json()
    assert set(system["jobs"]) == {"queued", "running", "succeeded", "failed", "cancelled"}
    assert system["jobs"]["succeeded"] >= 1 and system["queue_depth"] == system["jobs"]["queued"]
    assert system["max_concurrent_jobs"] == 1 and system["database"] == live.backend
    assert system["memory"]["process_rss_bytes"] > 0 and system["cpu"]["cores"] >= 1

    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    succeeded = re.search(r'^adgraph_jobs\{status="succeeded"\} (\S+)$', text, re.M)
    assert succeeded and float(succeeded.group(1)) == system["jobs"]["succeeded"]
    renders = re.search(r'^adgraph_node_seconds_count\{node="render",workflow="ad"\} (\S+)$', text, re.M)
    assert renders and float(renders.group(1)) >= 1, text[:2000]
    assert re.search(r"^adgraph_queue_depth \S+$", text, re.M)

    spec = http.get("/openapi.json").json()
    assert spec["info"]["title"] == "adgraph"
    for p in (
        "/v1/artifacts",
        "/v1/artifacts/{artifact_id}",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/resume",
        "/v1/jobs/{job_id}/branch",
        "/v1/jobs/{job_id}/checkpoints",
        "/v1/jobs/{job_id}/checkpoints/{checkpoint_id}",
        "/v1/workflows",
        "/v1/fonts",
        "/v1/system",
    ):
        assert p in spec["paths"], p


# -- 8. fuzzing ----------------------------------------------------------------------------------------


def test_schemathesis_finds_no_server_errors(live, done_job) -> None:
    """Generated requests, valid and invalid, against every operation but the SSE stream: never a 5xx."""
    schema = schemathesis.openapi.from_url(f"{live.server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.exclude(path_regex=r"/events$").get_all_operations()]
    assert len(operations) >= 15
    failures: list[str] = []
    with requests.Session() as session:
        for op in operations:
            fuzz(op, schemathesis.GenerationMode.POSITIVE, session, done_job["job"]["id"], failures)
            if not op.path_parameters and (op.query or op.body):  # a string in a path can't be made invalid
                fuzz(op, schemathesis.GenerationMode.NEGATIVE, session, done_job["job"]["id"], failures)
    assert not failures, "\n\n".join(failures[:10])


def fuzz(op: Any, mode: Any, session: requests.Session, job_id: str, failures: list[str]) -> None:
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
        # now and then a job that exists (never to DELETE: the operations after it would lose it)
        if (
            "job_id" in (case.path_parameters or {})
            and case.method.upper() != "DELETE"
            and next(turn) % 3 == 0
        ):
            case.path_parameters["job_id"] = job_id
        response = case.call(session=session, timeout=30)
        # 503 MODEL_UNAVAILABLE is an answer, not a failure: this server has no CLIP weights for clip-score
        unavailable = response.status_code == 503 and "MODEL_UNAVAILABLE" in response.text
        if response.status_code >= 500 and not unavailable:
            failures.append(
                f"{op.label}: {response.status_code}\n{case.as_curl_command()}\n{response.text[:300]}"
            )

    run()
