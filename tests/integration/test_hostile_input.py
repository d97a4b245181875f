"""Hostile and careless input through real HTTP: what the black-box probe of issue 16 found.

Each case is refused at the door with a stable code (before any job exists), or accepted and made to
work; and no answer names a file on the server. One live SQLite server serves the module, one job at a
time, so a job held in its `background` node keeps the next one queued.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image, ImageDraw

from checkpoints.artifacts import FileArtifactStore
from service.settings import Settings
from tests.integration.api_support import Faults, LiveServer, error_of, wait_for
from tests.support import PHOTOS, png_bytes
from tests.unit.site_support import EN

pytestmark = pytest.mark.integration

RED, BLUE = (220, 30, 30), (30, 30, 220)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hostile"),
        database_url=None,  # explicit, so an ADGRAPH_DATABASE_URL in the environment changes nothing
        checkpoint_url=None,
        max_concurrent_jobs=1,  # queued jobs stay queued while a held one runs
        lease_s=6.0,
    )
    live = LiveServer(settings, Faults())
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


def upload(
    http: httpx.Client, data: bytes, name: str = "photo.png", mime: str = "image/png"
) -> httpx.Response:
    return http.post("/v1/artifacts", files={"file": (name, data, mime)})


def uploaded(http: httpx.Client, data: bytes, name: str = "photo.png") -> dict[str, Any]:
    r = upload(http, data, name)
    assert r.status_code == 201, r.text
    return r.json()


def submit_ad(http: httpx.Client, photo_id: str, **inp: Any) -> httpx.Response:
    return http.post(
        "/v1/jobs", json={"workflow": "ad", "input": {"product_image": photo_id, "headline": "바나나", **inp}}
    )


def halves(size: tuple[int, int] = (120, 80)) -> Image.Image:
    """Left half red, right half blue: which way up it is stored shows in its pixels."""
    im = Image.new("RGB", size, RED)
    ImageDraw.Draw(im).rectangle((size[0] // 2, 0, size[0], size[1]), fill=BLUE)
    return im


def encoded(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def turned_a_quarter() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show": a phone held upright
    return exif.tobytes()


def near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=False))


@pytest.fixture(scope="module")
def photo(http) -> dict[str, Any]:
    return uploaded(http, (PHOTOS / "banana.png").read_bytes(), "banana.png")


@pytest.fixture(scope="module")
def grey16_job(http) -> dict[str, Any]:
    """A finished ad job made from a 16-bit greyscale PNG (mode I;16)."""
    grey = np.asarray(Image.open(PHOTOS / "banana.png").convert("L"), np.uint16) * 257
    im = Image.fromarray(grey)
    assert im.mode == "I;16"
    ref = uploaded(http, png_bytes(im), "grey16.png")
    assert (ref["width"], ref["height"]) == (800, 705)
    r = submit_ad(http, ref["id"], seed=7)
    assert r.status_code == 202, r.text
    return wait_for(http, r.json()["id"], timeout=180)


# -- uploads -------------------------------------------------------------------------------------------


def test_a_huge_flat_png_is_checked_from_its_header_and_stream_not_decoded_whole(http) -> None:
    """A 6000x6000 PNG of ~100 KB once cost ~144 MB an upload; eight at once now barely move the RSS."""
    big = png_bytes(Image.new("RGB", (6000, 6000), (200, 180, 40)))
    assert len(big) < 400_000
    proc, peak, done = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as client:
            return upload(client, big, "big.png")

    before = proc.memory_info().rss
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
    finally:
        done.set()
        sampler.join()
    assert all(r.status_code == 201 for r in answers), [r.text for r in answers]
    assert (answers[0].json()["width"], answers[0].json()["height"]) == (6000, 6000)
    assert peak[0] - before < 150 * 2**20, (before, peak[0])  # one whole decode alone is 108 MB

    # still a full check: a cut-off or bit-flipped PNG is refused
    error_of(upload(http, big[: len(big) // 2]), 422, "INVALID_IMAGE")
    flipped = bytearray(big)
    flipped[len(big) // 2] ^= 0xFF
    assert "CRC" in error_of(upload(http, bytes(flipped)), 422, "INVALID_IMAGE")["message"]
    jpeg = encoded(halves((3000, 2000)), "JPEG", quality=90)
    assert uploaded(http, jpeg, "big.jpg")["width"] == 3000
    error_of(upload(http, jpeg[: len(jpeg) * 2 // 3], "cut.jpg", "image/jpeg"), 422, "INVALID_IMAGE")


def test_heic_and_avif_from_phones_are_stored_upright_as_jpeg(http) -> None:
    for fmt, name in (("HEIF", "IMG_0001.HEIC"), ("AVIF", "IMG_0002.avif")):
        data = encoded(halves(), fmt, quality=90, exif=turned_a_quarter())
        ref = uploaded(http, data, name)
        assert ref["mime"] == "image/jpeg" and (ref["width"], ref["height"]) == (80, 120), (fmt, ref)
        stored = http.get(f"/v1/artifacts/{ref['id']}")
        assert stored.status_code == 200 and stored.headers["content-type"] == "image/jpeg"
        im = Image.open(io.BytesIO(stored.content))
        assert im.format == "JPEG" and im.size == (80, 120)
        assert im.getexif().get(0x0112, 1) == 1  # the turn is in the pixels now: the left half is on top
        assert near(im.getpixel((40, 10)), RED) and near(im.getpixel((40, 110)), BLUE), fmt
        assert uploaded(http, data, name) == ref  # the same upload, the same artifact
    error_of(upload(http, encoded(halves(), "HEIF")[:200], "cut.heic"), 422, "INVALID_IMAGE")


def test_an_exif_rotated_jpeg_is_kept_as_uploaded_and_reported_at_its_shown_size(http) -> None:
    data = encoded(halves(), "JPEG", quality=90, exif=turned_a_quarter())
    ref = uploaded(http, data, "portrait.jpg")
    assert (ref["width"], ref["height"]) == (80, 120)  # as a gallery shows it, not the 120x80 it is stored
    assert http.get(f"/v1/artifacts/{ref['id']}").content == data


def test_a_thin_strip_is_refused_at_upload_with_the_reason(http) -> None:
    err = error_of(upload(http, png_bytes(Image.new("RGB", (10000, 16), "white"))), 422, "INVALID_IMAGE")
    assert "aspect ratio" in err["message"] and "10000x16" in err["message"]
    assert err["details"]["max_aspect"] == 8
    error_of(upload(http, png_bytes(Image.new("RGB", (16, 200), "white"))), 422, "INVALID_IMAGE")
    assert uploaded(http, png_bytes(Image.new("RGB", (128, 16), "white")))["width"] == 128  # 8:1 is fine


# -- jobs ----------------------------------------------------------------------------------------------


def test_a_16_bit_greyscale_png_makes_an_ad(http, grey16_job) -> None:
    assert grey16_job["status"] == "succeeded", grey16_job
    cutout = Image.open(io.BytesIO(http.get(grey16_job["result"]["cutout"]["url"]).content))
    assert cutout.size == (800, 705) and cutout.mode == "RGBA"
    alpha = np.asarray(cutout.getchannel("A"))
    assert 0.05 < (alpha > 128).mean() < 0.95  # a product was found, not an all-white (clipped) photo


def test_numbers_and_flags_are_not_coerced_from_other_types(http, photo) -> None:
    for bad in ({"seed": True}, {"seed": "5"}, {"seed": 5.5}, {"restyle": "0.5"}, {"restyle": True}):
        err = error_of(submit_ad(http, photo["id"], **bad), 422, "INVALID_INPUT")
        assert next(iter(bad)) in err["details"]["fields"], (bad, err)


def test_a_site_zip_is_no_product_photo(http, photo) -> None:
    r = http.post(
        "/v1/jobs", json={"workflow": "homepage", "input": {"profile": EN, "images": [photo["id"]]}}
    )
    assert r.status_code == 202, r.text
    site = wait_for(http, r.json()["id"], timeout=180)
    assert site["status"] == "succeeded", site
    zip_id = site["result"]["site_zip"]["id"]
    err = error_of(submit_ad(http, zip_id), 422, "INVALID_IMAGE")
    assert "product_image" in err["message"] and "application/zip" in err["message"]
    r = http.post("/v1/jobs", json={"workflow": "homepage", "input": {"profile": EN, "images": [zip_id]}})
    error_of(r, 422, "INVALID_IMAGE")


def test_a_job_that_breaks_on_a_server_file_says_so_without_its_path(server, http, photo) -> None:
    """A stored photo turned bad under a queued job: it fails with a code, and neither the job nor its
    events say where the server keeps its files."""
    victim = uploaded(http, png_bytes(halves((64, 64))), "victim.png")
    with server.faults.gate.closed():
        held = submit_ad(http, photo["id"], seed=101).json()
        assert server.faults.gate.entered.wait(60)
        queued = submit_ad(http, victim["id"]).json()
        FileArtifactStore(server.settings.artifacts_dir).path(victim["id"], "image/png").write_bytes(
            b"x" * 99
        )
        assert http.post(f"/v1/jobs/{held['id']}/cancel").status_code == 202
    failed = wait_for(http, queued["id"])
    assert failed["status"] == "failed" and failed["error"]["code"] == "INTERNAL", failed
    assert "<path>" in failed["error"]["message"], failed["error"]
    events = http.get(f"/v1/jobs/{queued['id']}/events").text
    root = str(server.settings.data_dir)
    assert root not in json.dumps(failed) and root not in events
    assert "/artifacts/" not in failed["error"]["message"]


def test_a_branch_that_changes_nothing_and_a_branch_of_a_queued_job(server, http, photo, grey16_job) -> None:
    src = grey16_job["id"]
    for body in ({"from_node": "composite"}, {"from_node": "composite", "input": {"headline": "바나나"}}):
        err = error_of(http.post(f"/v1/jobs/{src}/branch", json=body), 422, "INVALID_INPUT")
        assert "nothing to change" in err["message"], err
    with server.faults.gate.closed():
        held = submit_ad(http, photo["id"], seed=201).json()
        assert server.faults.gate.entered.wait(60)
        queued = submit_ad(http, photo["id"], seed=202).json()
        err = error_of(
            http.post(f"/v1/jobs/{queued['id']}/branch", json={"from_node": "composite"}),
            404,
            "CHECKPOINT_NOT_FOUND",
        )
        assert queued["id"] in err["message"] and "queued" in err["message"]
        error_of(http.get(f"/v1/jobs/{queued['id']}/checkpoints/{uuid.uuid4()}"), 404, "CHECKPOINT_NOT_FOUND")
        error_of(
            http.post(f"/v1/jobs/{uuid.uuid4()}/branch", json={"from_node": "plan"}), 404, "JOB_NOT_FOUND"
        )
        # a real change is still a branch
        r = http.post(
            f"/v1/jobs/{src}/branch", json={"from_node": "composite", "input": {"headline": "반값"}}
        )
        assert r.status_code == 202, r.text
        for job_id in (queued["id"], r.json()["id"], held["id"]):
            assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert wait_for(http, held["id"])["status"] == "cancelled"


def test_a_web_address_in_a_profile_is_refused_at_submit_naming_the_field(http) -> None:
    for field, text in (
        ("store_strength", "see https://bluedoor.example"),
        ("location", "www.bluedoor.example"),
    ):
        profile = {**EN, field: text}
        r = http.post("/v1/jobs", json={"workflow": "homepage", "input": {"profile": profile}})
        err = error_of(r, 422, "INVALID_INPUT")
        assert f"profile.{field}" in err["details"]["fields"] and "web address" in err["message"], err


def test_sixty_thousand_unknown_keys_get_a_short_answer(http, photo) -> None:
    junk = {f"k{i}": 0 for i in range(60_000)}
    for body in (
        {"workflow": "ad", "input": {"product_image": photo["id"], "headline": "바나나", **junk}},
        {"workflow": "ad", "input": {}, **junk},
    ):
        r = http.post("/v1/jobs", json=body)
        assert len(r.content) < 10_000, len(r.content)
        err = error_of(r, 422, "INVALID_INPUT")
        assert len(err["details"]["fields"]) == 20 and err["details"]["more_fields"] >= 59_980
        assert "more problems" in err["message"]


def test_emoji_no_installed_font_can_draw_are_refused_naming_the_character(http, photo) -> None:
    drawn = subprocess.run(["fc-list", ":charset=1f34c", "family"], capture_output=True, text=True).stdout
    r = submit_ad(http, photo["id"], headline="바나나 🍌 세일")
    if drawn.strip():  # a colour emoji font is installed: Chromium draws it
        assert r.status_code == 202, r.text
        assert http.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code == 202
    else:
        err = error_of(r, 422, "INVALID_INPUT")
        assert (
            "🍌" in err["message"] and "U+1F34C" in err["message"] and err["details"]["field"] == "headline"
        )


# -- HTTP ----------------------------------------------------------------------------------------------


def test_405_says_what_is_allowed_and_head_works_on_health_and_downloads(http, photo) -> None:
    r = http.delete("/healthz")
    error_of(r, 405, "METHOD_NOT_ALLOWED")
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
    r = http.put("/v1/jobs")
    error_of(r, 405, "METHOD_NOT_ALLOWED")
    assert {"GET", "POST"} <= set(r.headers["allow"].split(", "))

    head = http.head("/healthz")
    assert head.status_code == 200 and head.content == b""
    url = f"/v1/artifacts/{photo['id']}"
    head = http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == photo["bytes"]
    assert head.headers["content-type"] == "image/png" and head.headers["etag"] == f'"{photo["id"]}"'


def test_range_errors_come_in_the_error_shape(http, photo) -> None:
    url = f"/v1/artifacts/{photo['id']}"
    part = http.get(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and len(part.content) == 10
    r = http.get(url, headers={"Range": f"bytes={photo['bytes'] + 10}-"})
    error_of(r, 416, "RANGE_NOT_SATISFIABLE")
    assert r.headers["content-range"] == f"bytes */{photo['bytes']}"
    error_of(http.get(url, headers={"Range": "pages=1-2"}), 400, "INVALID_INPUT")
