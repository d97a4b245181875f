"""The embedded `studio` backdrop: what a user sees in the picture behind their product."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
import pytest
from PIL import Image

from kernel.color import contrast, relative_luminance
from nodes.backends.studio import BackdropSpec, StudioBackdrop, parse_prompt, render_studio

SMALL = (360, 640)  # the 9:16 story format at a third of the size: same layout, fast to test
BLUE_PRODUCT = ["#2a6f97"]


def _pixels(prompt: str = "", palette: list[str] | None = None, seed: int = 1, size=SMALL) -> np.ndarray:
    image = render_studio(size, prompt, BLUE_PRODUCT if palette is None else palette, seed)
    return np.asarray(image, dtype=np.float32)


def _luma(pixels: np.ndarray) -> np.ndarray:
    return pixels @ np.array([0.299, 0.587, 0.114], np.float32)


def _band(pixels: np.ndarray, top: float, bottom: float) -> np.ndarray:
    h = pixels.shape[0]
    return pixels[int(top * h) : int(bottom * h)]


def _wall_rgb(pixels: np.ndarray) -> np.ndarray:
    """Mean colour of the wall, well above the horizon (which sits at 62–68 % of the height)."""
    return _band(pixels, 0.25, 0.55).reshape(-1, 3).mean(axis=0)


def _hue_deg(rgb: np.ndarray) -> float:
    h, _, _ = colorsys.rgb_to_hls(*(float(c) / 255 for c in rgb))
    return h * 360


def _texture_energy(pixels: np.ndarray) -> float:
    """Detail on the near floor: luminance minus its own blur (grain alone scores about 1)."""
    floor = _luma(_band(pixels, 0.75, 0.95))
    return float(np.abs(floor - cv2.GaussianBlur(floor, (0, 0), 6)).mean())


@pytest.mark.parametrize("size", [(1080, 1080), (1200, 628), (1080, 1920)])
async def test_generate_returns_rgb_image_of_the_requested_size(size: tuple[int, int]) -> None:
    backdrop = StudioBackdrop()
    image = await backdrop.generate(
        size=size, prompt="warm beige linen table, soft light", product_palette=BLUE_PRODUCT, seed=7
    )
    assert backdrop.name == "studio"
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    assert image.size == size


def test_same_inputs_give_identical_bytes_and_other_seeds_a_different_picture() -> None:
    first = render_studio(SMALL, "white marble", BLUE_PRODUCT, 42).tobytes()
    assert render_studio(SMALL, "white marble", BLUE_PRODUCT, 42).tobytes() == first
    for prompt in ("", "white marble"):
        a, b = _pixels(prompt, seed=1), _pixels(prompt, seed=2)
        assert np.abs(a - b).mean() > 1.5, prompt
        # ...but the same backdrop: the wall colour hardly moves between seeds.
        assert np.abs(_wall_rgb(a) - _wall_rgb(b)).max() < 25, prompt


@pytest.mark.parametrize("prompt", ["red", "빨간 배경", "빨강", "red wall, soft light"])
def test_red_words_give_a_reddish_wall(prompt: str) -> None:
    r, g, b = _wall_rgb(_pixels(prompt))
    assert r > g + 40 and r > b + 40


@pytest.mark.parametrize("prompt", ["blue", "파란 배경", "파랑", "navy backdrop", "남색"])
def test_blue_words_give_a_bluish_wall(prompt: str) -> None:
    wall = _wall_rgb(_pixels(prompt, palette=["#ffcc00"]))
    r, g, b = wall
    assert b > r + 25 and b > g + 10
    assert 200 < _hue_deg(wall) < 250


def test_other_colour_and_tone_words_land_on_the_wall() -> None:
    pink = _wall_rgb(_pixels("pastel pink"))
    assert pink[0] > pink[1] + 15 and relative_luminance(pink) > 0.4  # light and pink
    mint = _wall_rgb(_pixels("민트"))
    assert mint[1] > mint[0] + 20  # green leaning
    dark = _wall_rgb(_pixels("dark, moody", palette=["#f0f0f0"]))
    assert relative_luminance(dark) < 0.1
    black, silver = (_wall_rgb(_pixels(p)) for p in ("검은색 배경", "은색 배경"))
    assert relative_luminance(black) < relative_luminance(silver)


@pytest.mark.parametrize("prompt", ["marble", "wood", "대리석 테이블", "원목", "concrete", "linen"])
def test_materials_add_visible_texture_to_the_floor(prompt: str) -> None:
    plain = _texture_energy(_pixels(""))
    assert _texture_energy(_pixels(prompt)) > 1.4 * plain


def test_wall_and_floor_differ_and_meet_around_two_thirds_down() -> None:
    for prompt in ("", "pastel pink", "wood", "빨간 대리석 테이블"):
        luma = _luma(_pixels(prompt))
        wall = _band(luma, 0.35, 0.55).mean()
        floor = _band(luma, 0.78, 0.92).mean()
        assert abs(wall - floor) > 6, prompt
    # A tabletop has a crisp back edge between 60 and 70 % of the height; a paper sweep has none.
    for prompt, crisp in (("wood", True), ("빨간 대리석 테이블", True), ("", False), ("pastel pink", False)):
        rows = _luma(_pixels(prompt)).mean(axis=1)
        steps = np.abs(np.diff(rows))
        edge = int(np.argmax(steps))
        if crisp:
            assert steps[edge] > 5, prompt
            assert 0.6 < edge / len(rows) < 0.7, prompt
        else:
            assert steps.max() < 2, prompt


def test_light_falls_off_but_grain_stays_fine() -> None:
    for prompt in ("", "white", "soft light"):
        luma = _luma(_pixels(prompt))
        smooth = cv2.GaussianBlur(luma, (0, 0), 4)
        assert smooth.std() > 8, prompt  # a lit backdrop, not a flat fill
        grain = _band(luma - smooth, 0.2, 0.5)
        assert 0.3 < grain.std() < 3, prompt  # there is grain, and it is fine
    # The key light and the vignette: the middle of the wall is brighter than its top corners.
    luma = _luma(_pixels(""))
    h, w = luma.shape
    centre = luma[int(0.3 * h) : int(0.5 * h), int(0.3 * w) : int(0.7 * w)].mean()
    corners = (luma[: int(0.1 * h), : int(0.1 * w)].mean() + luma[: int(0.1 * h), -int(0.1 * w) :].mean()) / 2
    assert centre > corners + 10


@pytest.mark.parametrize(
    "product", ["#e63946", "#ffd60a", "#2a9d8f", "#3a86ff", "#ff006e", "#ffffff", "#111111", "#808080"]
)
def test_without_colour_words_the_wall_stands_apart_from_the_product(product: str) -> None:
    wall = _wall_rgb(_pixels("", palette=[product, "#000000"]))
    assert contrast(wall, product) >= 2.0


def test_a_colour_word_wins_but_is_nudged_away_from_a_product_of_the_same_colour() -> None:
    wall = _wall_rgb(_pixels("white", palette=["#ffffff"]))
    assert contrast(wall, "#ffffff") >= 1.3
    assert max(wall) - min(wall) < 20 and min(wall) > 150  # still a light neutral, as asked
    wall = _wall_rgb(_pixels("red", palette=["#c03030"]))
    assert contrast(wall, "#c03030") >= 1.3
    assert wall[0] > wall[1] + 30  # still red


def test_empty_prompt_and_empty_palette_still_give_a_backdrop() -> None:
    pixels = _pixels("", palette=[])
    assert pixels.shape == (SMALL[1], SMALL[0], 3)
    assert _luma(pixels).std() > 5


def test_bad_input_is_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match="#12345"):
        render_studio(SMALL, "", ["#12345"], 0)
    with pytest.raises(ValueError, match=r"\(0, 640\)"):
        render_studio((0, 640), "", [], 0)


def test_parse_reads_korean_colours_materials_and_moods() -> None:
    spec = parse_prompt("빨간 대리석 테이블")
    assert spec.material == "marble"
    assert spec.floor is not None and spec.wall is not None
    assert spec.floor[0] > spec.floor[1] + 60 and spec.wall[0] > spec.wall[1] + 30  # red stone, red-ish wall

    spec = parse_prompt("파란 배경에 원목 테이블, 부드러운 자연광")
    assert spec.material == "wood"
    assert spec.wall is not None and spec.wall[2] > spec.wall[0] + 60
    assert set(spec.moods) == {"soft", "natural"}

    assert parse_prompt("검은색 배경").wall == parse_prompt("black background").wall  # not 은색 (silver)
    assert parse_prompt("벽은 흰색, 바닥은 회색 콘크리트").wall == parse_prompt("white").wall
    assert parse_prompt("아이스크림").wall is None  # 아이스크림 is ice cream, not 크림 (cream)


def test_parse_combines_english_words_and_ignores_unknown_ones() -> None:
    spec = parse_prompt("warm beige linen table, soft light")
    assert spec.material == "linen" and "soft" in spec.moods
    assert spec.floor is not None and spec.floor[0] > spec.floor[2] + 30  # warm beige cloth

    spec = parse_prompt("light blue wall, dark wood floor")
    assert spec.wall is not None and spec.wall[2] > spec.wall[0] and relative_luminance(spec.wall) > 0.4
    assert spec.floor is not None and relative_luminance(spec.floor) < 0.1  # dark wood, not a light one

    assert parse_prompt("pastel").tones == ("pastel",)
    assert parse_prompt("quantum zebra 123 !!") == BackdropSpec()
    assert parse_prompt("") == BackdropSpec()
