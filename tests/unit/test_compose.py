"""The embedded compositor: the product stands whole inside the canvas, keeps its own pixels, leaves the
text area free, and sits on a soft shadow that darkens the floor without touching the product."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kernel.errors import AdgraphError
from kernel.models import SIZES, TEXT_POSITIONS, Box, Placement
from nodes.backends.compose import MAX_UPSCALE, StudioCompositor, compose, placed_cutout

GREEN = (0, 255, 0)
"""What the photo shows around the product: it must never bleed into the scene."""


@cache
def backdrop(size: tuple[int, int], wall=(228, 222, 212), floor=(190, 180, 166)) -> Image.Image:
    """A studio backdrop: a lit wall gradient and a floor below a horizon 65 % down."""
    w, h = size
    y = np.linspace(0.0, 1.0, h)[:, None, None]
    x = np.linspace(-1.0, 1.0, w)[None, :, None]
    wall_c = np.asarray(wall, float) * (1.04 - 0.12 * y) * (1.0 - 0.06 * x**2)
    floor_c = np.asarray(floor, float) * (0.95 + 0.1 * y) * (1.0 - 0.08 * x**2)
    t = np.clip((y - 0.65) / 0.03 + 0.5, 0.0, 1.0)
    return Image.fromarray(np.clip(wall_c * (1 - t) + floor_c * t, 0, 255).astype(np.uint8), "RGB")


@cache
def ellipse_cutout(
    photo: tuple[int, int], box: tuple[int, int, int, int], fill=(200, 30, 40), stripe=None
) -> Image.Image:
    """A photo of a coloured ellipse on green, with an anti-aliased matte (drawn 4x, then reduced)."""
    big = Image.new("L", (photo[0] * 4, photo[1] * 4), 0)
    ImageDraw.Draw(big).ellipse(tuple(4 * v for v in box), fill=255)
    alpha = big.reduce(4)
    rgb = Image.new("RGB", photo, GREEN)
    ImageDraw.Draw(rgb).ellipse(box, fill=fill)
    if stripe is not None:
        x0, y0, x1, y1 = box
        mid = (y0 + y1) // 2
        ImageDraw.Draw(rgb).rectangle((x0, mid - (y1 - y0) // 10, x1, mid + (y1 - y0) // 10), fill=stripe)
    # Grow the colour a little under the soft edge, as a real photo has product colour there.
    rgb_arr = np.asarray(rgb).copy()
    a = np.asarray(alpha)
    rgb_arr[(a > 0) & (rgb_arr == GREEN).all(axis=2)] = fill
    return Image.fromarray(np.dstack([rgb_arr, a]), "RGBA")


CUTOUTS = {
    "ellipse": ((600, 800), (150, 100, 450, 700)),
    "wide": ((1600, 500), (50, 180, 1550, 320)),
    "tall": ((400, 1600), (170, 40, 230, 1560)),
    "tiny": ((200, 200), (90, 90, 110, 115)),
    "huge": ((3000, 3000), (100, 100, 2900, 2900)),
}


def cutout(name: str) -> Image.Image:
    photo, box = CUTOUTS[name]
    return ellipse_cutout(photo, box)


def alpha_box(rgba: Image.Image) -> Box:
    left, top, right, bottom = rgba.getchannel("A").getbbox()
    return Box(x=left, y=top, w=right - left, h=bottom - top)


@pytest.mark.parametrize("name", list(CUTOUTS))
@pytest.mark.parametrize("position", TEXT_POSITIONS)
@pytest.mark.parametrize("size", list(SIZES))
def test_product_whole_inside_with_margin_and_clear_of_text(size: str, position: str, name: str) -> None:
    canvas = SIZES[size]
    scene, placement = compose(background=backdrop(canvas), cutout=cutout(name), text_position=position)
    w, h = canvas
    box, text = placement.product_box, placement.text_area
    margin = math.ceil(0.04 * min(w, h))

    assert scene.size == canvas and scene.mode == "RGB"
    assert box.x >= margin and box.y >= margin and box.right <= w - margin and box.bottom <= h - margin
    assert text.inside(w, h) and text.area > 0.2 * w * h
    assert box.intersection(text) == 0
    if w / h >= 1.5:
        assert text.right <= box.x and text.x < 0.05 * w  # text on the left, product on the right
        assert box.x >= 0.5 * w and box.w <= 0.42 * w + 1 and box.h <= 0.8 * h + 1
    elif position == "bottom":
        assert text.bottom > 0.9 * h and text.y >= box.bottom
    else:
        assert text.y < 0.06 * h and text.bottom <= box.y
        assert 0.3 * h <= text.h <= 0.42 * h
        assert box.bottom > 0.8 * h  # stands on the floor, low in the frame

    # The placed layer is the product, whole: its matte's box is the product box.
    layer = placed_cutout(cutout(name), placement, canvas)
    assert alpha_box(layer) == box


@pytest.mark.parametrize("name", list(CUTOUTS))
@pytest.mark.parametrize("position", TEXT_POSITIONS)
@pytest.mark.parametrize("size", list(SIZES))
def test_opaque_product_pixels_are_the_cutouts_own(size: str, position: str, name: str) -> None:
    canvas = SIZES[size]
    scene, placement = compose(background=backdrop(canvas), cutout=cutout(name), text_position=position)
    layer = np.asarray(placed_cutout(cutout(name), placement, canvas))
    opaque = layer[..., 3] == 255
    assert opaque.sum() > 0.5 * (layer[..., 3] > 0).sum()
    np.testing.assert_array_equal(np.asarray(scene)[opaque], layer[opaque][:, :3])


@pytest.mark.parametrize("position", TEXT_POSITIONS)
@pytest.mark.parametrize("size", list(SIZES))
def test_text_area_is_left_exactly_as_the_backdrop(size: str, position: str) -> None:
    canvas = SIZES[size]
    bg = backdrop(canvas)
    scene, placement = compose(background=bg, cutout=cutout("wide"), text_position=position)
    t = placement.text_area
    np.testing.assert_array_equal(
        np.asarray(scene)[t.y : t.bottom, t.x : t.right], np.asarray(bg)[t.y : t.bottom, t.x : t.right]
    )


def test_placement_maps_the_photo_onto_the_canvas() -> None:
    """x, y, scale say where any photo pixel lands: the matte's corner lands on the product box."""
    left, top, right, bottom = cutout("ellipse").getchannel("A").getbbox()
    _, placement = compose(background=backdrop((1080, 1080)), cutout=cutout("ellipse"), text_position="top")
    s = placement.scale
    assert abs(placement.x + left * s - placement.product_box.x) <= 1
    assert abs(placement.y + top * s - placement.product_box.y) <= 1
    assert abs((right - left) * s - placement.product_box.w) <= 1
    assert abs((bottom - top) * s - placement.product_box.h) <= 1


def test_small_product_is_enlarged_at_most_2_5x_and_big_one_shrunk() -> None:
    canvas = (1080, 1080)
    _, tiny = compose(background=backdrop(canvas), cutout=cutout("tiny"), text_position="auto")
    _, huge = compose(background=backdrop(canvas), cutout=cutout("huge"), text_position="auto")
    _, ellipse = compose(background=backdrop(canvas), cutout=cutout("ellipse"), text_position="auto")
    assert tiny.scale == MAX_UPSCALE
    assert huge.scale < 0.25
    # A normal product fills its slot: about 45 % of the square's height.
    assert ellipse.product_box.h >= 0.4 * canvas[1]


def test_photo_background_does_not_fringe_the_edge() -> None:
    """The green around the product in the photo must not show as a halo (premultiplied resampling)."""
    for name in ("ellipse", "tall", "huge", "tiny"):
        scene, placement = compose(
            background=backdrop((1080, 1920)), cutout=cutout(name), text_position="auto"
        )
        b = placement.product_box
        rgb = np.asarray(scene)[b.y - 3 : b.bottom + 3, b.x - 3 : b.right + 3].astype(int)
        greenish = (rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2])) > 25
        assert not greenish.any(), name


def test_contact_shadow_darkens_the_floor_below_the_base_like_a_multiply() -> None:
    canvas = (1080, 1080)
    bg = Image.new("RGB", canvas, (200, 160, 120))
    scene, placement = compose(background=bg, cutout=cutout("ellipse"), text_position="auto")
    s, b = np.asarray(scene).astype(float), np.asarray(bg).astype(float)
    box = placement.product_box
    cx = box.x + box.w // 2

    below = s[box.bottom + 3, cx] / b[box.bottom + 3, cx]
    assert below.max() < 0.8  # clearly darker just under the base
    assert np.ptp(below) < 0.03  # the same factor on every channel: the floor's colour, darker
    side = box.x - box.w // 4
    beside = s[box.bottom + 3, side] / b[box.bottom + 3, side]
    assert below.mean() < beside.mean() <= 1.0  # darkest at the contact, fading outwards
    far = s[box.bottom + 3, 10] / b[box.bottom + 3, 10]
    np.testing.assert_allclose(far, 1.0)  # the rest of the floor is untouched
    assert (s[box.bottom + 3 :, :] <= b[box.bottom + 3 :, :]).all()  # shadows only darken


def test_shadow_never_covers_the_product() -> None:
    """On a black product a shadow drawn on top would not show, so use white: it must stay pure white."""
    white = ellipse_cutout((600, 800), (150, 100, 450, 700), fill=(255, 255, 255))
    scene, placement = compose(background=backdrop((1080, 1920)), cutout=white, text_position="auto")
    layer = np.asarray(placed_cutout(white, placement, (1080, 1920)))
    assert (np.asarray(scene)[layer[..., 3] == 255] == 255).all()


def test_coffee_photo_with_a_rough_matte() -> None:
    data = pytest.importorskip("skimage.data")
    photo = data.coffee()  # a cup on a saucer on a table, 600x400
    h, w = photo.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    saucer = ((xx - 278) / 203) ** 2 + ((yy - 226) / 161) ** 2 < 1
    cup = ((xx - 291) / 119) ** 2 + ((yy - 112) / 95) ** 2 < 1
    matte = np.where(saucer | cup, 255, 0).astype(np.uint8)
    cut = Image.fromarray(np.dstack([photo, matte]), "RGBA")
    for size in SIZES.values():
        scene, placement = compose(background=backdrop(size), cutout=cut, text_position="auto")
        layer = np.asarray(placed_cutout(cut, placement, size))
        opaque = layer[..., 3] == 255
        np.testing.assert_array_equal(np.asarray(scene)[opaque], layer[opaque][:, :3])
        assert placement.product_box.intersection(placement.text_area) == 0


def test_mode_and_input_errors_name_the_problem() -> None:
    bg = backdrop((1080, 1080))
    with pytest.raises(AdgraphError) as err:
        compose(background=bg, cutout=cutout("ellipse"), text_position="left")
    assert err.value.code == "INVALID_INPUT" and "'left'" in err.value.message
    with pytest.raises(AdgraphError) as err:
        compose(background=bg, cutout=Image.new("RGBA", (50, 50), (255, 0, 0, 0)), text_position="auto")
    assert err.value.code == "INVALID_IMAGE" and "empty" in err.value.message
    with pytest.raises(AdgraphError) as err:
        compose(background=bg, cutout=Image.new("RGB", (50, 50)), text_position="auto")
    assert err.value.code == "INVALID_IMAGE" and "'RGB'" in err.value.message


def test_other_input_modes_are_accepted() -> None:
    la = cutout("ellipse").convert("LA")
    scene, placement = compose(
        background=backdrop((1200, 628)).convert("RGBA"), cutout=la, text_position="auto"
    )
    assert scene.mode == "RGB" and placement.product_box.area > 0


async def test_studio_compositor_runs_the_pure_function() -> None:
    bg, cut = backdrop((1080, 1920)), cutout("ellipse")
    scene, placement = await StudioCompositor().compose(background=bg, cutout=cut, text_position="bottom")
    again, same = compose(background=bg, cutout=cut, text_position="bottom")
    assert isinstance(placement, Placement) and placement == same
    assert scene.tobytes() == again.tobytes()
    assert Placement.model_validate_json(placement.model_dump_json()) == placement
