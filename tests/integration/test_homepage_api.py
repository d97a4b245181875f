"""The homepage workflow through the REST service: submit, follow, download, checkpoints, branch.

One live server per backend (SQLite; PostgreSQL for jobs and checkpoints) with the real runner, Chromium
and axe-core serves the module.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.integration.api_support import (
    Faults,
    LiveServer,
    count_jobs,
    error_of,
    fresh_database,
    postgres_reachable,
    sse_events,
    wait_for,
)
from tests.support import PHOTOS
from tests.unit.site_support import EN, KO

pytestmark = pytest.mark.integration
NODES = ["plan", "design", "code", "render"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def http(request, tmp_path_factory) -> Iterator[httpx.Client]:
    settings = {
        "data_dir": tmp_path_factory.mktemp("homepage-api"),
        "database_url": None,
        "checkpoint_url": None,
    }
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":  # jobs and checkpoints in PostgreSQL, as when scaled out
            if not postgres_reachable():
                pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
            settings["database_url"] = stack.enter_context(fresh_database())
        server = LiveServer(Settings(**settings), Faults())
        server.start()
        stack.callback(server.stop)
        yield stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30))


@pytest.fixture(scope="module")
def photo(http) -> str:
    r = http.post(
        "/v1/artifacts", files={"file": ("banana.png", (PHOTOS / "banana.png").read_bytes(), "image/png")}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def submit(http: httpx.Client, **inp: Any) -> httpx.Response:
    return http.post("/v1/jobs", json={"workflow": "homepage", "input": inp})


@pytest.fixture(scope="module")
def done(http, photo) -> dict[str, Any]:
    r = submit(http, profile=KO, images=[photo], pages=["about"])
    assert r.status_code == 202, r.text
    assert r.json()["workflow"] == "homepage" and r.json()["status"] in ("queued", "running")
    return wait_for(http, r.json()["id"])


def test_the_workflow_is_listed_with_its_nodes_and_input_schema(http):
    assert {"name": "homepage", "nodes": NODES} in http.get("/v1/workflows").json()
    wf = http.get("/v1/workflows/homepage").json()
    assert wf["nodes"] == NODES
    assert ["plan", "design"] in wf["edges"] and ["code", "render"] in wf["edges"]
    schema = wf["input_schema"]
    assert set(schema["properties"]) == {"profile", "images", "pages", "style"}
    profile = schema["$defs"]["Profile"]
    assert profile["required"] == ["store_name"] and profile["additionalProperties"] is False
    assert "phone_number" in profile["properties"]


def test_a_homepage_job_succeeds_with_its_site_screens_and_report(http, done):
    job = done
    assert job["status"] == "succeeded", job["error"]
    assert [n["name"] for n in job["nodes"]] == NODES
    assert job["progress"]["percent"] == 100
    result = job["result"]
    assert {"site_zip", "screen:index-desktop", "screen:index-mobile", "screen:gallery-mobile"} <= set(result)
    z = http.get(result["site_zip"]["url"])
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as site:
        index = site.read("site/index.html").decode()
    assert KO["store_name"] in index and KO["phone_number"] in index
    shot = http.get(result["screen:index-mobile"]["url"])
    assert shot.headers["content-type"] == "image/png"
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
        evs = list(sse_events(events))
    report = next(e["data"] for e in evs if e["event"] == "report")
    assert report["pages"] == ["index.html", "about.html", "gallery.html"]
    assert all(c["passed"] for c in report["checks"].values()) and "axe" in report["checks"]
    assert {p: a["agent"] for p, a in report["agents"].items()} == {
        "plan": "rules",
        "design": "rules",
        "code": "rules",
    }
    assert evs[-1]["event"] == "job_finished"


def test_checkpoints_name_each_node_and_render_previews_the_zip(http, done):
    cps = http.get(f"/v1/jobs/{done['id']}/checkpoints").json()
    assert [c["node"] for c in cps if c["node"] in NODES] == NODES
    render = next(c for c in cps if c["node"] == "render")
    assert render["preview"]["id"] == done["result"]["site_zip"]["id"]
    plan = next(c for c in cps if c["node"] == "plan")
    values = http.get(f"/v1/jobs/{done['id']}/checkpoints/{plan['id']}").json()["values"]
    assert values["plan"]["language"] == "ko" and "site" not in values


def test_branch_from_plan_with_a_new_style_keeps_the_plan_and_changes_the_design(http, done):
    r = http.post(f"/v1/jobs/{done['id']}/branch", json={"from_node": "plan", "input": {"style": "classic"}})
    assert r.status_code == 202, r.text
    child = wait_for(http, r.json()["id"])
    assert child["status"] == "succeeded", child["error"]
    assert child["parent"]["job_id"] == done["id"]
    assert [n["name"] for n in child["nodes"]] == ["design", "code", "render"]

    def last_values(job_id: str) -> dict[str, Any]:
        cp = http.get(f"/v1/jobs/{job_id}/checkpoints").json()[-1]
        return http.get(f"/v1/jobs/{job_id}/checkpoints/{cp['id']}").json()["values"]

    before, after = last_values(done["id"]), last_values(child["id"])
    assert after["plan"] == before["plan"]
    assert (before["design"]["style"], after["design"]["style"]) == ("warm", "classic")
    assert after["design"]["palette"] != before["design"]["palette"]
    assert child["result"]["site_zip"]["id"] != done["result"]["site_zip"]["id"]
    # the style is read by `design`: a branch after it would change nothing, so it is refused
    late = http.post(
        f"/v1/jobs/{done['id']}/branch", json={"from_node": "design", "input": {"style": "modern"}}
    )
    assert "branch from 'plan'" in error_of(late, 422, "INVALID_INPUT")["message"]


@pytest.mark.parametrize(
    ("inp", "status", "code"),
    [
        ({"profile": {**EN, "instagram": "@bluedoor"}}, 422, "INVALID_INPUT"),
        ({"profile": {**EN, "store_name": ""}}, 422, "INVALID_INPUT"),
        (
            {"profile": EN, "pages": ["about", "menu", "contact", "gallery", "index", "about"]},
            422,
            "INVALID_INPUT",
        ),
        ({"profile": EN, "pages": ["blog"]}, 422, "INVALID_INPUT"),
        ({"profile": EN, "images": ["0" * 64]}, 404, "ARTIFACT_NOT_FOUND"),
        ({"profile": EN, "colour": "red"}, 422, "INVALID_INPUT"),
    ],
    ids=[
        "unknown-profile-field",
        "empty-name",
        "six-pages",
        "unknown-page",
        "missing-image",
        "unknown-field",
    ],
)
def test_bad_input_is_refused_before_a_job_exists(http, inp, status, code):
    before = count_jobs(http)
    error_of(submit(http, **inp), status, code)
    assert count_jobs(http) == before


def test_an_artifact_that_is_not_an_image_is_invalid_image(http, done):
    before = count_jobs(http)
    error_of(submit(http, profile=EN, images=[done["result"]["site_zip"]["id"]]), 422, "INVALID_IMAGE")
    assert count_jobs(http) == before
