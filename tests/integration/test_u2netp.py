"""The embedded u2netp segmenter on real photos: does the cut-out hold the product and nothing else?"""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest
from PIL import Image

from kernel.errors import AdgraphError
from nodes.backends.matte import make_cutout, matte_box
from nodes.backends.u2netp import U2NetPSegmenter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def segmenter() -> U2NetPSegmenter:
    seg = U2NetPSegmenter()
    seg.load()  # warm once for the module
    return seg


@pytest.fixture(scope="module")
def mattes(
    segmenter: U2NetPSegmenter, coffee: Image.Image, banana: Image.Image, fish_plate: Image.Image
) -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Each photo segmented once: name -> (photo, matte as uint8 array)."""
    photos = {"coffee": coffee, "banana": banana, "dried_fish_plate": fish_plate}
    return {name: (photo, np.asarray(segmenter.segment_sync(photo))) for name, photo in photos.items()}


def _corners(a: np.ndarray, n: int = 20) -> list[np.ndarray]:
    return [a[:n, :n], a[:n, -n:], a[-n:, :n], a[-n:, -n:]]


def _blob_shares(a: np.ndarray) -> list[float]:
    """Share of the matte's area in each connected blob, largest first."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((a > 0).astype(np.uint8), connectivity=8)
    areas = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    return list(areas / areas.sum())


def test_the_model_ships_in_the_wheel_and_the_session_stays_warm(segmenter):
    assert segmenter.model_path is not None and segmenter.model_path.is_file()
    assert segmenter.load() is segmenter.load()


@pytest.mark.parametrize("name", ["coffee", "banana", "dried_fish_plate"])
def test_matte_is_an_L_image_at_the_photos_size(mattes, name):
    photo, a = mattes[name]
    assert a.dtype == np.uint8 and a.shape == (photo.height, photo.width)
    assert (a == 255).any() and (a == 0).any()
    assert ((a > 0) & (a < 255)).any(), "the edge should be feathered"


def test_banana_the_fruit_is_in_and_the_white_backdrop_is_out(mattes):
    photo, a = mattes["banana"]
    rgb = np.asarray(photo).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    yellow = (r > 150) & (g > 120) & (b < 0.75 * g)
    assert yellow.sum() > 0.15 * yellow.size
    assert (a[yellow] > 0).mean() > 0.98
    assert (a[yellow] == 255).mean() > 0.95
    box = matte_box(a)
    ys, xs = np.nonzero(yellow)
    inside = (xs >= box.x) & (xs < box.right) & (ys >= box.y) & (ys < box.bottom)
    assert inside.mean() > 0.99
    white = (r > 240) & (g > 240) & (b > 240)
    assert (a[white] == 0).mean() > 0.97
    for corner in _corners(a):
        assert corner.max() == 0


def test_coffee_the_cup_and_saucer_are_in_and_the_table_is_out(mattes):
    photo, a = mattes["coffee"]
    h, w = a.shape
    assert (a[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10] == 255).all(), "the cup"
    assert a[250, 120] == 255, "the saucer's left side"
    for corner in _corners(a):
        assert corner.max() == 0
    box = matte_box(a)
    assert 0.4 < box.w * box.h / (w * h) < 0.8


def test_fish_plate_the_plate_is_in_and_most_of_the_counter_is_out(mattes):
    photo, a = mattes["dried_fish_plate"]
    h, w = a.shape
    assert (a[h // 2 - 15 : h // 2 + 15, w // 2 - 15 : w // 2 + 15] == 255).all(), "the fish on the plate"
    assert a[420, 60] == 255, "the peanuts on the plate"
    assert a[120, 660] == 255, "the dip bowl"
    assert a[:60, :60].max() == 0, "counter, top left"
    assert a[700:, 450:550].max() == 0, "counter, bottom right"
    share = (a > 0).mean()
    assert 0.4 < share < 0.75
    box = matte_box(a)
    assert 0.5 < box.w * box.h / (w * h) <= 1.0


@pytest.mark.parametrize("name", ["coffee", "banana", "dried_fish_plate"])
def test_the_matte_is_one_main_blob(mattes, name):
    _, a = mattes[name]
    shares = _blob_shares(a)
    assert shares[0] > 0.98, f"blob shares {shares[:4]}"


@pytest.mark.parametrize("name", ["coffee", "banana", "dried_fish_plate"])
def test_the_cutout_shows_the_photos_own_pixels(mattes, name):
    photo, a = mattes[name]
    cut = np.asarray(make_cutout(photo, Image.fromarray(a)))
    assert cut.shape == (photo.height, photo.width, 4)
    solid = a > 0
    assert np.array_equal(cut[..., :3][solid], np.asarray(photo)[solid])
    assert np.array_equal(cut[..., 3], a)


async def test_segment_runs_off_the_event_loop_and_matches_the_sync_path(segmenter, mattes):
    """While a photo is segmented the service's event loop goes on serving (how fast is bench/ad_job.py's)."""
    photo, a = mattes["coffee"]
    job = asyncio.create_task(segmenter.segment(photo))
    served = asyncio.Event()
    asyncio.get_running_loop().call_soon(served.set)  # queued behind the segment call's first step
    await asyncio.wait_for(served.wait(), 60)
    assert not job.done()  # a call that ran on the loop would have finished before the loop got here
    matte = await job
    assert matte.mode == "L" and matte.size == photo.size
    assert np.array_equal(np.asarray(matte), a)


async def test_concurrent_requests_share_one_session_and_agree():
    seg = U2NetPSegmenter()  # cold: both requests race to load it
    photo = Image.new("RGB", (320, 240), (235, 235, 235))
    photo.paste((190, 30, 40), (110, 60, 210, 200))
    a, b = await asyncio.gather(seg.segment(photo), seg.segment(photo))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert a.getpixel((160, 130)) == 255 and a.getpixel((5, 5)) == 0
    assert seg.load() is seg.load()


def test_predict_gives_raw_saliency_at_the_photo_size(segmenter, mattes):
    photo, _ = mattes["banana"]
    p = segmenter.predict(photo)
    assert p.dtype == np.float32 and p.shape == (photo.height, photo.width)
    assert p.min() >= 0.0 and p.max() <= 1.0
    assert p[photo.height // 2 + 100, photo.width // 2 + 100] > 0.9  # on the fruit
    assert p[5, 5] < 0.05


def test_a_large_photo_gets_a_full_size_matte(segmenter, mattes):
    photo, small = mattes["banana"]
    big = photo.resize((photo.width * 4, photo.height * 4), Image.LANCZOS)
    a = np.asarray(segmenter.segment_sync(big))
    assert a.shape == (big.height, big.width)
    down = cv2.resize(a, (photo.width, photo.height), interpolation=cv2.INTER_AREA)
    agree = ((down > 127) == (small > 127)).mean()
    assert agree > 0.99


def test_a_cutout_png_keeps_its_own_transparency(segmenter, mattes):
    photo, a = mattes["banana"]
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(a > 0, 255, 0).astype(np.uint8)))
    matte = np.asarray(segmenter.segment_sync(rgba))
    assert (matte[a == 0] == 0).all()
    assert (matte[a == 255] > 0).mean() > 0.99


def test_a_blank_photo_has_no_product(segmenter):
    with pytest.raises(AdgraphError) as err:
        segmenter.segment_sync(Image.new("RGB", (640, 480), (245, 245, 245)))
    assert err.value.code == "INVALID_INPUT"
    assert "no product found" in err.value.message
