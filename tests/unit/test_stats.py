"""The embedded analyzer: free regions never touch the product, the reserved text area is offered first,
the product's colours and the backdrop's brightness are what a person would say."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kernel.color import hex_to_rgb, hsv, hue_distance, rgb_to_hex
from kernel.models import SIZES, TEXT_POSITIONS, Box, Placement, SceneAnalysis
from nodes.backends.compose import compose
from nodes.backends.stats import StatsAnalyzer, analyze_scene, region_score


def gradient(size: tuple[int, int], top=(236, 230, 220), bottom=(150, 140, 128)) -> Image.Image:
    w, h = size
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    rgb = np.asarray(top, float) * (1 - t) + np.asarray(bottom, float) * t
    return Image.fromarray(np.broadcast_to(rgb, (h, w, 3)).round().astype(np.uint8), "RGB")


def product(fill=(210, 25, 35), stripe=None, photo=(600, 800), box=(150, 100, 450, 700)) -> Image.Image:
    """A photo of an ellipse with a hard matte; optionally a horizontal band of a second colour."""
    rgba = Image.new("RGBA", photo, (0, 0, 0, 0))
    draw = ImageDraw.Draw(rgba)
    draw.ellipse(box, fill=(*fill, 255))
    if stripe is not None:
        mid = (box[1] + box[3]) // 2
        band = Image.new("RGBA", photo, (0, 0, 0, 0))
        ImageDraw.Draw(band).rectangle((0, mid - 60, photo[0], mid + 60), fill=(*stripe, 255))
        rgba.paste(
            band, (0, 0), Image.fromarray(np.minimum(np.asarray(band)[..., 3], np.asarray(rgba)[..., 3]))
        )
    return rgba


def scene_for(size: tuple[int, int], position: str = "auto", **kw) -> tuple[Image.Image, Placement]:
    bg = kw.pop("background", None) or gradient(size)
    return compose(background=bg, cutout=product(**kw), text_position=position)


@pytest.mark.parametrize("position", TEXT_POSITIONS)
@pytest.mark.parametrize("size", list(SIZES))
def test_regions_keep_clear_of_the_product_and_offer_the_text_area(size: str, position: str) -> None:
    canvas = SIZES[size]
    scene, placement = scene_for(canvas, position)
    analysis = analyze_scene(scene, placement)
    w, h = canvas

    assert analysis.product_box == placement.product_box
    keep_out = placement.product_box.expand(math.ceil(0.02 * min(w, h)))
    assert analysis.regions, "no free region"
    for region in analysis.regions:
        assert region.box.intersection(keep_out) == 0, region
        assert region.box.inside(w, h) and region.box.area > 0
        assert 0.0 <= region.emptiness <= 1.0
        lo, hi = region.luminance_range
        assert 0.0 <= lo <= region.luminance <= hi <= 1.0
    names = [r.name for r in analysis.regions]
    assert len(names) == len(set(names))
    assert names[0] == "text_area"
    assert analysis.regions[0].box == placement.text_area
    scores = [region_score(r, w, h) for r in analysis.regions]
    assert scores == sorted(scores, reverse=True)


def test_side_bands_are_offered_when_there_is_room() -> None:
    canvas = (1080, 1080)
    scene, placement = scene_for(canvas, photo=(300, 800), box=(120, 100, 180, 700))  # a slim bottle
    names = {r.name for r in analyze_scene(scene, placement).regions}
    assert {"text_area", "left", "right"} <= names


def test_bands_too_small_for_text_are_dropped() -> None:
    """A product that fills the canvas leaves only slivers; only the (trimmed) text area may remain."""
    canvas = (1080, 1080)
    scene = gradient(canvas)
    placement = Placement(
        scale=1.0,
        x=0,
        y=0,
        product_box=Box(x=60, y=150, w=960, h=870),
        text_area=Box(x=40, y=20, w=1000, h=110),
    )
    regions = analyze_scene(scene, placement).regions
    assert [r.name for r in regions] == ["text_area"]


def test_a_text_area_that_overlaps_the_product_is_trimmed() -> None:
    """Another compositor might hand in an overlapping text area: the region never covers the product."""
    canvas = (1080, 1080)
    placement = Placement(
        scale=1.0,
        x=0,
        y=0,
        product_box=Box(x=400, y=400, w=300, h=500),
        text_area=Box(x=40, y=40, w=1000, h=500),
    )
    analysis = analyze_scene(gradient(canvas), placement)
    text = next(r for r in analysis.regions if r.name == "text_area")
    assert text.box.intersection(placement.product_box.expand(22)) == 0
    assert text.box.y == 40 and text.box.w == 1000  # the band above the product is kept


def test_a_busy_text_area_loses_to_a_flat_band() -> None:
    canvas = (1080, 1080)
    bg = np.asarray(gradient(canvas)).copy()
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, size=(25, 54, 3), dtype=np.uint8)  # a busy pattern of 20 px tiles on top
    bg[:500] = np.asarray(Image.fromarray(blocks).resize((1080, 500), Image.Resampling.NEAREST))
    placement = Placement(
        scale=1.0,
        x=0,
        y=0,
        product_box=Box(x=400, y=520, w=280, h=200),
        text_area=Box(x=40, y=40, w=1000, h=420),
    )
    regions = analyze_scene(Image.fromarray(bg), placement).regions
    by_name = {r.name: r for r in regions}
    assert by_name["text_area"].emptiness < 0.2
    assert by_name["bottom"].emptiness > 0.9
    assert regions[0].name == "bottom"


@pytest.mark.parametrize("size", list(SIZES))
def test_a_red_product_is_red(size: str) -> None:
    scene, placement = scene_for(SIZES[size])
    analysis = analyze_scene(scene, placement)
    hue, sat, _ = hsv(analysis.dominant)
    assert hue_distance(hue, 0.0) < 15 and sat > 0.6, analysis.dominant
    assert analysis.accent == analysis.dominant  # one colour: nothing to accent
    assert analysis.palette[0] == analysis.dominant and len(analysis.palette) <= 5


def test_a_red_product_with_a_blue_band_has_a_blue_accent() -> None:
    scene, placement = scene_for((1080, 1080), stripe=(30, 70, 220))
    analysis = analyze_scene(scene, placement)
    assert hue_distance(hsv(analysis.dominant)[0], 0.0) < 15, analysis.dominant
    assert hue_distance(hsv(analysis.accent)[0], 225.0) < 25, analysis.accent
    assert analysis.accent in analysis.palette


def test_the_backdrop_does_not_count_as_product_colour() -> None:
    """A round product leaves backdrop in its box's corners; it must not become the dominant colour."""
    bg = Image.new("RGB", (1080, 1080), (40, 60, 200))
    scene, placement = scene_for((1080, 1080), background=bg, fill=(240, 200, 20), box=(100, 100, 500, 500))
    dominant = hex_to_rgb(analyze_scene(scene, placement).dominant)
    assert dominant[0] > 180 and dominant[1] > 150 and dominant[2] < 90, dominant


@pytest.mark.parametrize(("colour", "expected"), [((255, 255, 255), 1.0), ((0, 0, 0), 0.0)])
def test_region_luminance_on_white_and_black(colour: tuple[int, int, int], expected: float) -> None:
    canvas = (1080, 1920)
    scene, placement = scene_for(canvas, background=Image.new("RGB", canvas, colour))
    analysis = analyze_scene(scene, placement)
    text = analysis.regions[0]
    assert text.name == "text_area"
    assert text.luminance == pytest.approx(expected, abs=0.01)
    assert text.luminance_range == pytest.approx((expected, expected), abs=0.01)
    assert text.color == rgb_to_hex(colour) and text.emptiness > 0.99
    corners = [analysis.brightness[0][0], analysis.brightness[0][-1], analysis.brightness[-1][0]]
    assert corners == pytest.approx([expected] * 3, abs=0.01)


def test_brightness_grid_follows_the_scene() -> None:
    canvas = (1080, 1080)
    scene, placement = scene_for(
        canvas, background=gradient(canvas, top=(20, 20, 20), bottom=(250, 250, 250))
    )
    grid = analyze_scene(scene, placement).brightness
    assert len(grid) == 8 and all(len(row) == 8 for row in grid)
    left_column = [row[0] for row in grid]
    assert left_column == sorted(left_column) and left_column[0] < 0.02 < 0.8 < left_column[-1]
    assert all(0.0 <= v <= 1.0 for row in grid for v in row)


async def test_stats_analyzer_runs_the_pure_function() -> None:
    scene, placement = scene_for((1200, 628))
    analyzer = StatsAnalyzer()
    analysis = await analyzer.analyze(scene=scene, placement=placement)
    assert analyzer.name == "stats"
    assert analysis == analyze_scene(scene, placement)
    assert SceneAnalysis.model_validate_json(analysis.model_dump_json()) == analysis
