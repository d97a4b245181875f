"""The one colour module: hex parsing, WCAG luminance and contrast, HLS / HSV, as every layer uses them."""

from __future__ import annotations

import numpy as np
import pytest

from kernel.color import (
    blend_over,
    contrast,
    contrast_ratio,
    from_hls,
    hex_to_rgb,
    hls,
    hsv,
    hue_distance,
    luminance_map,
    parse_color,
    relative_luminance,
    rgb_from_hls,
    rgb_to_hex,
    worst_contrast,
)


def test_hex_round_trip_and_bad_input() -> None:
    assert hex_to_rgb("#FFaa00") == (255, 170, 0) and hex_to_rgb("0af") == (0, 170, 255)
    assert rgb_to_hex((255, 170, 0)) == "#ffaa00" and rgb_to_hex((300.0, -4, 12.6)) == "#ff000d"
    with pytest.raises(ValueError, match="#12345"):
        hex_to_rgb("#12345")
    with pytest.raises(ValueError, match="zzzzzz"):
        hex_to_rgb("#zzzzzz")


@pytest.mark.parametrize("text", ["0x12ab", "#12_345", "+12345", "##abc", "#12 345"])
def test_only_hex_digits_make_a_colour(text: str) -> None:
    # int(..., 16) alone would take a sign, an "0x" prefix or underscores
    with pytest.raises(ValueError):
        hex_to_rgb(text)


def test_a_models_colour_is_read_leniently_but_never_guessed() -> None:
    assert parse_color(" #ABC ") == "#aabbcc" and parse_color("12ab9f") == "#12ab9f"
    assert parse_color("rgb(255, 0, 12)") == "#ff000c"
    for bad in ("rgb(300, 0, 0)", "#12345", "red", "0x12ab", None, 12):
        assert parse_color(bad) is None, bad


def test_wcag_luminance_and_contrast() -> None:
    assert relative_luminance("#ffffff") == pytest.approx(1.0)
    assert relative_luminance((0, 0, 0)) == 0.0
    assert relative_luminance("#777777") == pytest.approx(0.1845, abs=1e-4)
    assert relative_luminance((119, 119, 119)) == relative_luminance("#777777")
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic just-fails grey
    assert contrast((119, 119, 119), "#ffffff") == contrast("#777777", "#ffffff")
    assert contrast_ratio(0.2, 0.9) == contrast_ratio(0.9, 0.2)
    pixels = np.asarray([[[255, 255, 255], [0, 0, 0], [119, 119, 119], [255, 0, 0]]], dtype=np.uint8)
    lum = luminance_map(pixels)
    assert lum.dtype == np.float32 and lum.shape == (1, 4)
    np.testing.assert_allclose(lum[0], [1.0, 0.0, 0.1845, 0.2126], atol=1e-4)


def test_contrast_over_a_band_and_through_a_panel() -> None:
    assert worst_contrast("#ffffff", (0.0, 0.2)) == pytest.approx(contrast_ratio(1.0, 0.2))
    assert worst_contrast("#777777", (0.1, 0.3)) == 1.0  # its own luminance lies inside the band
    assert blend_over("#000000", 1.0, 0.8) == 0.0
    assert blend_over("#000000", 0.0, 0.5) == pytest.approx(0.5, abs=1e-3)


def test_hls_round_trip() -> None:
    h, lightness, s = hls("#2a6f97")
    assert from_hls(h, lightness, s) == "#2a6f97" and hls((42, 111, 151)) == (h, lightness, s)
    assert rgb_from_hls(h + 1.0, lightness, s) == rgb_from_hls(h, lightness, s) == (42, 111, 151)
    assert from_hls(0.0, 1.5, -1.0) == "#ffffff"  # lightness and saturation are clipped


def test_hue_helpers() -> None:
    assert hsv("#ff0000") == pytest.approx((0.0, 1.0, 1.0))
    assert hsv("#0000ff")[0] == pytest.approx(240.0)
    assert hsv("#808080")[1] == 0.0
    assert hue_distance(350.0, 10.0) == pytest.approx(20.0)
