"""Batches (a catalog: one ad per row) as a client sees them, over real HTTP to the real app, database,
runner, u2netp and Chromium; and `adgraph catalog` as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from service.settings import Settings
from tests.integration.api_support import Faults, LiveServer, adgraph, error_of, make_key, wait_for
from tests.support import PHOTOS, wait_until

pytestmark = pytest.mark.integration

BANANA = (PHOTOS / "banana.png").read_bytes()
FISH = (PHOTOS / "dried_fish_plate.png").read_bytes()
ENDED = ("succeeded", "failed", "cancelled", "partial")


class Shop:
    def __init__(self, base_url: str, key: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {key}"})

    def upload(self, data: bytes = BANANA) -> str:
        r = self.http.post("/v1/artifacts", files={"file": ("p.png", data, "image/png")})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def create(self, rows: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        return self.http.post("/v1/batches", json={"workflow": "ad", "rows": rows}, **kw)

    def batch(self, batch_id: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/batches/{batch_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def jobs_of(self, batch_id: str) -> list[dict[str, Any]]:
        r = self.http.get(f"/v1/batches/{batch_id}/jobs")
        assert r.status_code == 200, r.text
        assert r.json()["batch_id"] == batch_id
        return r.json()["jobs"]

    def ended(self, batch_id: str, statuses: tuple[str, ...] = ENDED) -> dict[str, Any]:
        return wait_until(
            lambda: (b := self.batch(batch_id))["status"] in statuses and b, 120, what=f"batch {batch_id}"
        )

    def count_jobs(self) -> int:
        return len(self.http.get("/v1/jobs", params={"limit": 200}).json()["jobs"])


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("batches")
    keys = {
        "a": make_key(data_dir, "shop-a"),
        "b": make_key(data_dir, "shop-b"),
        "small": make_key(data_dir, "shop-c", "--max-running", "2"),
    }
    settings = Settings(data_dir=data_dir, database_url=None, checkpoint_url=None, max_concurrent_jobs=1)
    live = LiveServer(settings, Faults())
    live.start()
    try:
        yield live, keys
    finally:
        live.stop()


@pytest.fixture(scope="module")
def shop(server) -> Iterator[Shop]:
    live, keys = server
    s = Shop(live.base_url, keys["a"])
    yield s
    s.http.close()


@pytest.fixture(scope="module")
def done_batch(shop) -> dict[str, Any]:
    """A finished 3-row batch of tenant A: two photos, three sizes."""
    banana, fish = shop.upload(BANANA), shop.upload(FISH)
    rows = [
        {"product_image": banana, "headline": "달콤한 바나나", "cta": "주문하기"},
        {"product_image": fish, "headline": "바삭한 생선", "size": "1200x628", "background_prompt": "blue"},
        {"product_image": banana, "headline": "오늘만 세일", "subline": "단 하루", "size": "1080x1920"},
    ]
    r = shop.create(rows)
    assert r.status_code == 202, r.text
    return {"created": r.json(), "batch": shop.ended(r.json()["id"]), "photo": banana}


def test_a_three_row_batch_makes_every_ad_and_zips_them_file_by_file(shop, done_batch) -> None:
    created, batch = done_batch["created"], done_batch["batch"]
    assert created["rows"] == 3 and created["workflow"] == "ad" and uuid.UUID(created["id"])
    assert created["status"] in ("queued", "running") and sum(created["counts"].values()) == 3
    assert batch["status"] == "succeeded" and batch["percent"] == 100 and batch["eta_seconds"] == 0
    assert batch["counts"] == {"queued": 0, "running": 0, "succeeded": 3, "failed": 0, "cancelled": 0}

    rows = shop.jobs_of(batch["id"])
    assert [r["row"] for r in rows] == [1, 2, 3]
    sizes = [(1080, 1080), (1200, 628), (1080, 1920)]
    listed = {j["id"]: j for j in shop.http.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    for row, size in zip(rows, sizes, strict=True):
        assert row["status"] == "succeeded" and row["error"] is None and row["percent"] == 100
        assert row["job_id"] in listed  # an ordinary job of the tenant
        ad = shop.http.get(row["ad"]["url"])
        assert ad.status_code == 200 and Image.open(io.BytesIO(ad.content)).size == size

    r = shop.http.get(f"/v1/batches/{batch['id']}/zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith("attachment")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = zf.namelist()
        pngs = [f"row-{r['row']:03d}-{r['job_id'][:8]}.png" for r in rows]
        assert names == [*pngs, "manifest.json", "index.csv"]
        for name, size, row in zip(pngs, sizes, rows, strict=True):
            data = zf.read(name)
            assert data == shop.http.get(row["ad"]["url"]).content
            assert Image.open(io.BytesIO(data)).size == size
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["batch_id"] == batch["id"] and manifest["status"] == "succeeded"
        assert [(m["row"], m["job_id"], m["status"], m["error"], m["file"]) for m in manifest["rows"]] == [
            (r["row"], r["job_id"], "succeeded", None, name) for r, name in zip(rows, pngs, strict=True)
        ]
        index = list(csv.DictReader(io.StringIO(zf.read("index.csv").decode())))
        assert [(int(i["row"]), i["status"], i["file"]) for i in index] == [
            (r["row"], "succeeded", name) for r, name in zip(rows, pngs, strict=True)
        ]


def test_a_batch_with_bad_rows_is_refused_naming_each_row_and_makes_nothing(shop, done_batch) -> None:
    photo = done_batch["photo"]
    before = shop.count_jobs()
    rows = [
        {"product_image": photo, "headline": "좋은 줄"},
        {"product_image": photo, "headline": "   "},
        {"product_image": "0" * 64, "headline": "없는 사진"},
        {"product_image": photo, "headline": "크기", "size": "640x480"},
    ]
    err = error_of(shop.create(rows), 422, "INVALID_INPUT")
    bad = {(p["row"], p["field"]) for p in err["details"]["rows"]}
    assert bad == {(2, "headline"), (3, "product_image"), (4, "size")}, err
    assert "row 2: headline" in err["message"] and "row 3: product_image" in err["message"]
    for body in ([], [{"product_image": photo, "headline": "x"}] * 201):
        error_of(shop.create(body), 422, "INVALID_INPUT")
    error_of(
        shop.http.post("/v1/batches", json={"workflow": "homepage", "rows": rows[:1]}), 422, "INVALID_INPUT"
    )
    assert shop.count_jobs() == before


def test_a_failed_row_makes_the_batch_partial_and_resume_reruns_only_that_row(
    server, shop, done_batch
) -> None:
    live, _ = server
    photo = done_batch["photo"]
    assert live.faults.renderer is not None
    live.faults.renderer.fail(1)  # one job at a time: row 1's render is the next one
    rows = [{"product_image": photo, "headline": f"줄 {n}", "seed": n} for n in (1, 2, 3)]
    r = shop.create(rows, headers={"Idempotency-Key": "catalog-1"})
    assert r.status_code == 202, r.text
    again = shop.create(rows, headers={"Idempotency-Key": "catalog-1"})
    assert again.status_code == 202 and again.json()["id"] == r.json()["id"]  # no second batch
    batch = shop.ended(r.json()["id"])
    assert batch["status"] == "partial", batch
    assert batch["counts"]["failed"] == 1 and batch["counts"]["succeeded"] == 2
    jobs = shop.jobs_of(batch["id"])
    assert jobs[0]["status"] == "failed" and jobs[0]["error"]["code"] == "RENDER_FAILED"
    assert [j["status"] for j in jobs[1:]] == ["succeeded", "succeeded"]
    with zipfile.ZipFile(io.BytesIO(shop.http.get(f"/v1/batches/{batch['id']}/zip").content)) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 2
        first = json.loads(zf.read("manifest.json"))["rows"][0]
        assert (first["status"], first["error"], first["file"]) == ("failed", "RENDER_FAILED", None)
    before = {j["job_id"]: wait_for(shop.http, j["job_id"]) for j in jobs}

    r = shop.http.post(f"/v1/batches/{batch['id']}/resume")
    assert r.status_code == 202, r.text
    batch = shop.ended(batch["id"], ("succeeded", "failed", "partial"))
    assert batch["status"] == "succeeded", batch
    rerun = wait_for(shop.http, jobs[0]["job_id"])
    assert [n["name"] for n in rerun["nodes"] if n["attempt"] == 2] == ["render"]
    for j in jobs[1:]:
        assert wait_for(shop.http, j["job_id"]) == before[j["job_id"]]  # untouched
    error_of(shop.http.post(f"/v1/batches/{batch['id']}/resume"), 409, "JOB_NOT_RESUMABLE")


def test_cancel_a_running_batch(server, shop, done_batch) -> None:
    live, _ = server
    with live.faults.gate.closed() as gate:
        rows = [
            {"product_image": done_batch["photo"], "headline": f"취소 {n}", "seed": 10 + n} for n in (1, 2, 3)
        ]
        r = shop.create(rows)
        assert r.status_code == 202, r.text
        assert gate.entered.wait(60), "row 1 never reached its background node"
        running = shop.batch(r.json()["id"])
        assert running["status"] == "running" and running["counts"]["running"] == 1
        assert running["counts"]["queued"] == 2 and 0 <= running["percent"] < 100
        cancelled = shop.http.post(f"/v1/batches/{r.json()['id']}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["counts"]["queued"] == 0
    batch = shop.ended(r.json()["id"])
    assert batch["status"] == "cancelled" and batch["counts"]["cancelled"] == 3, batch
    jobs = shop.jobs_of(batch["id"])
    assert [n["name"] for n in wait_for(shop.http, jobs[0]["job_id"])["nodes"]] == ["segment", "background"]
    assert all(wait_for(shop.http, j["job_id"])["nodes"] == [] for j in jobs[1:])


def test_another_tenant_gets_batch_not_found_and_a_small_quota_refuses_a_big_batch(
    server, done_batch
) -> None:
    live, keys = server
    batch_id = done_batch["batch"]["id"]
    other = Shop(live.base_url, keys["b"])
    small = Shop(live.base_url, keys["small"])
    try:
        for method, path in (
            ("GET", ""),
            ("GET", "/jobs"),
            ("GET", "/zip"),
            ("POST", "/cancel"),
            ("POST", "/resume"),
        ):
            error_of(other.http.request(method, f"/v1/batches/{batch_id}{path}"), 404, "BATCH_NOT_FOUND")
        error_of(other.http.get(f"/v1/batches/{uuid.uuid4()}"), 404, "BATCH_NOT_FOUND")
        error_of(other.http.get("/v1/batches/not-a-batch"), 422, "INVALID_INPUT")
        # tenant A's photo is not B's: the row naming it is refused
        err = error_of(
            other.create([{"product_image": done_batch["photo"], "headline": "x"}]), 422, "INVALID_INPUT"
        )
        assert (
            err["details"]["rows"][0]["row"] == 1
            and err["details"]["rows"][0]["code"] == "ARTIFACT_NOT_FOUND"
        )

        photo = small.upload()
        refused = small.create([{"product_image": photo, "headline": f"{n}"} for n in range(3)])
        error_of(refused, 429, "QUOTA_EXCEEDED")
        assert small.count_jobs() == 0
    finally:
        other.http.close()
        small.http.close()


# -- the CLI ---------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.DictWriter(f, fieldnames=["photo", "headline", "subline", "cta", "prompt", "size"])
        out.writeheader()
        out.writerows(rows)
    return path


def test_cli_catalog_writes_each_rows_ad_the_zip_and_result_and_refuses_a_bad_row(tmp_path) -> None:
    data_dir, out = tmp_path / "data", tmp_path / "out"
    good = write_csv(
        tmp_path / "good.csv",
        [
            {"photo": "banana.png", "headline": "달콤한 바나나", "cta": "주문", "prompt": "yellow"},
            {"photo": "dried_fish_plate.png", "headline": "생선", "size": "1200x628"},
        ],
    )
    run = adgraph(
        "catalog", "--csv", str(good), "--photos", str(PHOTOS), "--out", str(out), data_dir=data_dir
    )
    assert run.returncode == 0, run.stderr
    assert "row 2 succeeded" in run.stderr
    result = json.loads(run.stdout)
    assert result == json.loads((out / "result.json").read_text())
    assert result["status"] == "succeeded" and [j["row"] for j in result["jobs"]] == [1, 2]
    for name, size in (("row-001.png", (1080, 1080)), ("row-002.png", (1200, 628))):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size == size
    with zipfile.ZipFile(out / "catalog.zip") as zf:
        assert len([n for n in zf.namelist() if n.startswith("row-")]) == 2

    bad = write_csv(
        tmp_path / "bad.csv",
        [
            {"photo": "banana.png", "headline": "좋음"},
            {"photo": "banana.png", "headline": "좋음"},
            {"photo": "banana.png", "headline": "", "size": "1080x1080"},
        ],
    )
    refused = adgraph(
        "catalog",
        "--csv",
        str(bad),
        "--photos",
        str(PHOTOS),
        "--out",
        str(tmp_path / "o2"),
        data_dir=data_dir,
    )
    assert refused.returncode == 2, refused.stderr
    assert "error: INVALID_INPUT: row 3: headline" in refused.stderr, refused.stderr
    assert not (tmp_path / "o2").exists()
    listed = adgraph("jobs", "list", data_dir=data_dir)
    assert len(json.loads(listed.stdout)["jobs"]) == 2  # the refused catalog made no job
