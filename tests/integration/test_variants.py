"""Variants: one ad job in several copies and sizes, made by the real service (SQLite, u2netp, Chromium),
through the application layer, over REST and by the CLI."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from kernel.models import SIZES
from service.accounts import LOCAL
from service.jobs import Jobs, open_service
from service.settings import Settings
from service.variants import Variants, VariantSet
from tests.integration.ad_checks import assert_product_whole_and_text_off_it, assert_text_reads_at_4_5_to_1
from tests.integration.api_support import Faults, LiveServer, adgraph, error_of, make_key
from tests.support import PHOTOS, until, wait_until

pytestmark = pytest.mark.integration
in_loop = pytest.mark.asyncio(loop_scope="module")

BANANA = (PHOTOS / "banana.png").read_bytes()
COPIES = [
    {"headline": "달콤한 바나나", "subline": "제주 농장 직송", "cta": "지금 주문"},
    {"headline": "오늘만 반값 세일", "subline": "", "cta": "구매하기"},
]
SIZES_ASKED = ["1080x1080", "1200x628"]
TEXT_LAYER = ("plan", "design", "code", "render")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def jobs(tmp_path_factory) -> AsyncIterator[Jobs]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("variants"), max_concurrent_jobs=2, lease_s=3)
    async with open_service(settings, worker=True, evaluations=False, idle_poll_s=0.1) as service:
        yield service


async def ended(jobs: Jobs, job_id: str) -> VariantSet:
    return await until(
        lambda: _ended(jobs, job_id), within=120, interval=0.05, what=f"the variants of {job_id}"
    )  # polls the derived status; each variant's job is made as its source finishes


async def _ended(jobs: Jobs, job_id: str) -> VariantSet | None:
    view = await Variants(jobs).get(LOCAL, job_id)
    return view if view.status not in ("queued", "running") else None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def done(jobs) -> VariantSet:
    photo = await jobs.upload(LOCAL, BANANA, "banana.png")
    job = await jobs.submit(LOCAL, "ad", {"product_image": photo.id, "copies": COPIES, "sizes": SIZES_ASKED})
    assert (job.variant_of, job.variant, job.input["headline"], job.input["size"]) == (
        job.id,
        0,
        COPIES[0]["headline"],
        SIZES_ASKED[0],
    )
    return await ended(jobs, job.id)


@in_loop
async def test_the_cut_out_is_made_once_a_backdrop_once_per_size_and_a_text_layer_per_copy_and_size(
    done,
) -> None:
    assert done.status == "succeeded" and done.counts["succeeded"] == 4 and done.percent == 100
    labels = [(v.spec.label["size"], v.spec.label["headline"]) for v in done.variants]
    assert labels == [(s, c["headline"]) for s in SIZES_ASKED for c in COPIES]
    ran: dict[str, int] = {}
    for v in done.variants:
        assert v.job is not None and v.job.status == "succeeded"
        for n in v.job.nodes:
            assert n["status"] == "succeeded"
            ran[n["name"]] = ran.get(n["name"], 0) + 1
    assert ran == {
        "segment": 1,
        **dict.fromkeys(("background", "composite", "analyze"), len(SIZES_ASKED)),
        **dict.fromkeys(TEXT_LAYER, len(SIZES_ASKED) * len(COPIES)),
    }
    # lineage: a size is a branch of the job after segment, a copy a branch of its size after analyze
    root, same_size_copy, other_size, other_size_copy = (v.job for v in done.variants)
    assert root.parent_job_id is None
    assert same_size_copy.parent_job_id == root.id and other_size.parent_job_id == root.id
    assert other_size_copy.parent_job_id == other_size.id
    assert {v.job.variant_of for v in done.variants} == {root.id}


@in_loop
async def test_every_variant_is_an_ad_with_its_product_whole_and_its_own_copy_legible(jobs, done) -> None:
    store = jobs.components.artifacts
    renderer = jobs.components.contexts["ad"].renderer
    cutouts = set()
    for v in done.variants:
        _, values = await jobs.final_state(LOCAL, v.job.id)
        assert values["size"] == v.spec.label["size"]
        assert (
            values["copy"].headline == v.spec.label["headline"] and values["copy"].cta == v.spec.label["cta"]
        )
        cutout, scene, layer, ad = [
            await store.open_image(values[k]) for k in ("cutout", "scene", "text_layer", "ad")
        ]
        assert ad.size == SIZES[v.spec.label["size"]]
        assert_product_whole_and_text_off_it(cutout, scene, layer, ad, values)
        await assert_text_reads_at_4_5_to_1(renderer, values, scene, ad)
        cutouts.add(values["cutout"].id)
    assert len(cutouts) == 1  # one cut-out for all four


@in_loop
async def test_a_variant_is_branched_on_its_own_and_runs_only_its_text_layer(jobs, done) -> None:
    variant = done.variants[3].job
    child = await jobs.branch(LOCAL, variant.id, from_node="analyze", changes={"headline": "주말 특가"})
    assert child.variant_of is None  # a branch of a variant is a job of its own
    finished = await until(
        lambda: _finished(jobs, child.id), within=60, interval=0.05, what="the branch of a variant"
    )
    assert finished.status == "succeeded"
    assert [n["name"] for n in finished.nodes] == list(TEXT_LAYER)
    assert (await Variants(jobs).get(LOCAL, child.id)).variants[0].job.id == child.id  # itself alone


async def _finished(jobs: Jobs, job_id: str) -> Any:
    job = await jobs.get(LOCAL, job_id)
    return job if job.status in ("succeeded", "failed", "cancelled") else None


@in_loop
async def test_variants_a_runner_died_before_branching_are_made_by_the_reaper(jobs) -> None:
    """The runner that finished the first job stops before it branches the others (as if killed just
    then): the job stays marked, and a reaper round makes them."""
    runner = jobs.runner
    hook, runner.after_success = runner.after_success, None
    try:
        photo = await jobs.upload(LOCAL, BANANA, "banana.png")
        job = await jobs.submit(
            LOCAL, "ad", {"product_image": photo.id, "headline": "한 장 더", "sizes": SIZES_ASKED}
        )
        first = await until(
            lambda: _finished(jobs, job.id), within=60, interval=0.05, what="the first variant"
        )
        assert first.status == "succeeded" and first.spawn_pending
        view = await Variants(jobs).get(LOCAL, job.id)
        assert view.status == "running" and [v.job is not None for v in view.variants] == [True, False]
    finally:
        runner.after_success = hook
    view = await ended(jobs, job.id)
    assert view.status == "succeeded" and view.variants[1].job.parent_job_id == job.id
    assert not (await jobs.get(LOCAL, job.id)).spawn_pending


# -- over REST and the CLI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("variants-rest")
    keys = {"a": make_key(data_dir, "shop-a"), "b": make_key(data_dir, "shop-b")}
    keys["small"] = make_key(data_dir, "shop-c", "--max-running", "2")
    live = LiveServer(Settings(data_dir=data_dir, database_url=None, checkpoint_url=None), Faults())
    live.start()
    try:
        yield live, keys
    finally:
        live.stop()


def client(live: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def test_over_rest_a_job_lists_its_variants_and_zips_them_and_bad_asks_are_refused(server) -> None:
    live, keys = server
    with client(live, keys["a"]) as a, client(live, keys["b"]) as b, client(live, keys["small"]) as small:
        photo = a.post("/v1/artifacts", files={"file": ("b.png", BANANA, "image/png")}).json()["id"]
        r = a.post("/v1/jobs", json={"workflow": "ad", "input": {"product_image": photo, "copies": COPIES}})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["variant_of"] == job["id"] and job["variant"] == 0
        out = wait_until(
            lambda: (v := a.get(f"/v1/jobs/{job['id']}/variants").json())["status"] == "succeeded" and v,
            120,
            what="the variants",
        )
        assert [(v["variant"], v["headline"], v["size"], v["status"]) for v in out["variants"]] == [
            (0, COPIES[0]["headline"], "1080x1080", "succeeded"),
            (1, COPIES[1]["headline"], "1080x1080", "succeeded"),
        ]
        second = a.get(f"/v1/jobs/{out['variants'][1]['job_id']}").json()
        assert (
            second["variant_of"] == job["id"]
            and second["variant"] == 1
            and second["parent"]["job_id"] == job["id"]
        )
        assert a.get(f"/v1/jobs/{second['id']}/variants").json() == out  # from any of them, the same set

        z = a.get(f"/v1/jobs/{job['id']}/variants/zip")
        assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
            assert zf.namelist() == ["variant-01-1080x1080.png", "variant-02-1080x1080.png", "manifest.json"]
            for name, v in zip(zf.namelist()[:2], out["variants"], strict=True):
                assert zf.read(name) == a.get(v["ad"]["url"]).content
                assert Image.open(io.BytesIO(zf.read(name))).size == (1080, 1080)
            manifest = json.loads(zf.read("manifest.json"))
            assert [m["job_id"] for m in manifest["variants"]] == [v["job_id"] for v in out["variants"]]

        assert b.get(f"/v1/jobs/{job['id']}/variants").status_code == 404  # another tenant's
        assert b.get(f"/v1/jobs/{job['id']}/variants/zip").status_code == 404

        def refused(inp: dict[str, Any], field: str) -> None:
            r = a.post("/v1/jobs", json={"workflow": "ad", "input": {"product_image": photo, **inp}})
            assert field in error_of(r, 422, "INVALID_INPUT")["details"]["fields"], r.text

        before = len(a.get("/v1/jobs", params={"limit": 100}).json()["jobs"])
        refused({"copies": COPIES, "sizes": ["1080x1080", "1080x1080"]}, "sizes")
        refused({"copies": [{"headline": f"{i}"} for i in range(9)]}, "copies")
        refused({"headline": "다른 문구", "copies": COPIES}, "input")
        refused({"copies": [COPIES[0], COPIES[0]]}, "input")
        assert len(a.get("/v1/jobs", params={"limit": 100}).json()["jobs"]) == before  # nothing made

        photo_c = small.post("/v1/artifacts", files={"file": ("b.png", BANANA, "image/png")}).json()["id"]
        r = small.post(
            "/v1/jobs",
            json={
                "workflow": "ad",
                "input": {"product_image": photo_c, "headline": "x", "sizes": list(SIZES)},
            },
        )
        error_of(r, 429, "QUOTA_EXCEEDED")  # 3 variants, a quota of 2: refused whole
        assert small.get("/v1/jobs").json()["jobs"] == []
        r = a.post("/v1/batches", json={"rows": [{"product_image": photo, "copies": COPIES}]})
        assert error_of(r, 422, "INVALID_INPUT")["details"]["rows"][0]["field"] == "copies"


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_cli_repeated_headlines_and_sizes_write_every_variant(tmp_path) -> None:
    photo = tmp_path / "banana.png"
    photo.write_bytes(BANANA)
    out = tmp_path / "out"
    r = adgraph(
        "ad", "--product", str(photo), "--prompt", "soft blue",
        "--headline", "달콤한 바나나", "--headline", "오늘만 세일", "--cta", "주문하기",
        "--size", "1080x1080", "--size", "1080x1920", "--out", str(out),
        data_dir=tmp_path / "data",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "variants.json").read_text())
    assert doc["status"] == "succeeded" and len(doc["variants"]) == 4
    assert [(v["size"], v["headline"], v["cta"]) for v in doc["variants"]] == [
        (s, h, "주문하기") for s in ("1080x1080", "1080x1920") for h in ("달콤한 바나나", "오늘만 세일")
    ]
    assert size_of(out / "ad.png") == (1080, 1080)  # the first, where a single ad would be
    for folder, size in (("variant-02-1080x1080", (1080, 1080)), ("variant-03-1080x1920", (1080, 1920))):
        assert size_of(out / folder / "ad.png") == size
        assert json.loads((out / folder / "result.json").read_text())["status"] == "succeeded"
    with zipfile.ZipFile(out / "variants.zip") as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 4
    bad = adgraph(
        "ad", "--product", str(photo), "--prompt", "x", "--headline", "a", "--headline", "b",
        "--cta", "1", "--cta", "2", "--cta", "3", "--out", str(tmp_path / "bad"), data_dir=tmp_path / "data",
    )  # fmt: skip
    assert bad.returncode == 2 and "INVALID_INPUT" in bad.stderr and "--cta" in bad.stderr
