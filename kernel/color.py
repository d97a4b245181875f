"""Colour maths, once: hex <-> RGB, WCAG relative luminance and contrast, HLS and HSV, per-pixel luminance.

All functions are pure. Colours are "#rrggbb" strings or (r, g, b) sequences of 0..255; luminances are
WCAG 2.x relative luminances in 0..1 (https://www.w3.org/TR/WCAG21/#dfn-relative-luminance).
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

RGB = tuple[int, int, int]
Colour = str | Sequence[float]
"""A "#rrggbb" string or an (r, g, b) triple of 0..255."""

HEX_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
WHITE = "#ffffff"
NEAR_BLACK = "#111111"

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_CSS_RGB = re.compile(r"^rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$", re.I)

# sRGB 8-bit value -> linear light, per the WCAG formula (threshold 0.04045, as in IEC 61966-2-1).
_SRGB = np.arange(256, dtype=np.float64) / 255.0
LINEAR_LUT: np.ndarray = np.where(_SRGB <= 0.04045, _SRGB / 12.92, ((_SRGB + 0.055) / 1.055) ** 2.4).astype(
    np.float32
)
LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)
"""Weights of linear R, G, B in relative luminance."""

# -- hex ----------------------------------------------------------------------------------------------


def hex_to_rgb(color: str) -> RGB:
    """Parse "#rrggbb" or "#rgb" (the "#" optional, any case) into (r, g, b); ValueError on anything else."""
    s = color.strip().removeprefix("#")
    if len(s) == 3:
        s = "".join(c * 2 for c in s)
    if len(s) != 6 or not _HEX_DIGITS.issuperset(s):
        raise ValueError(f"not a hex colour: {color!r} (expected #rrggbb)")
    value = int(s, 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def rgb_to_hex(rgb: Sequence[float]) -> str:
    """Format (r, g, b) in 0..255 (floats are rounded and clipped) as "#rrggbb"."""
    r, g, b = (int(min(255, max(0, round(float(c))))) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def parse_color(raw: Any) -> str | None:
    """A colour as a model may write it ("#rrggbb", "#rgb", without "#", or "rgb(r, g, b)") as "#rrggbb",
    or None if it is none of those."""
    if not isinstance(raw, str):
        return None
    raw = raw.strip()
    if m := _CSS_RGB.match(raw):
        rgb = [int(v) for v in m.groups()]
        return rgb_to_hex(rgb) if all(0 <= v <= 255 for v in rgb) else None
    try:
        return rgb_to_hex(hex_to_rgb(raw))
    except ValueError:
        return None


def _rgb(color: Colour) -> Sequence[float]:
    return hex_to_rgb(color) if isinstance(color, str) else color


# -- WCAG luminance and contrast ----------------------------------------------------------------------


def _linear(c: float) -> float:
    s = float(c) / 255.0
    return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4


def _encode(lin: float) -> float:
    """Linear light 0..1 -> sRGB 0..255 (float)."""
    lin = min(1.0, max(0.0, lin))
    s = lin * 12.92 if lin <= 0.0031308 else 1.055 * lin ** (1 / 2.4) - 0.055
    return s * 255.0


def relative_luminance(color: Colour) -> float:
    """WCAG relative luminance (0 black .. 1 white) of a hex colour or an (r, g, b) 0..255 triple."""
    r, g, b = (_linear(c) for c in _rgb(color)[:3])
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def luminance_map(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel WCAG relative luminance of an sRGB uint8 array (H, W, 3) -> float32 (H, W) in 0..1."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected a uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")
    lin = LINEAR_LUT[rgb[..., :3]]
    return lin @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)


def contrast_ratio(l1: float, l2: float) -> float:
    """WCAG contrast ratio (1..21) between two relative luminances, in either order."""
    hi, lo = max(l1, l2), min(l1, l2)
    return (hi + 0.05) / (lo + 0.05)


def contrast(a: Colour, b: Colour) -> float:
    """WCAG contrast ratio (1..21) between two colours (hex or RGB)."""
    return contrast_ratio(relative_luminance(a), relative_luminance(b))


def worst_contrast(color: str, lum_range: tuple[float, float]) -> float:
    """Lowest contrast of `color` against any background luminance in `lum_range`.

    The contrast against a luminance band is lowest at one of its ends (or 1.0 if the colour's own
    luminance falls inside it, which the ends already imply is bad).
    """
    lc = relative_luminance(color)
    lo, hi = min(lum_range), max(lum_range)
    if lo <= lc <= hi:
        return 1.0
    return min(contrast_ratio(lc, lo), contrast_ratio(lc, hi))


def grey_for_luminance(lum: float) -> float:
    """The sRGB channel value (0..255) of the grey with relative luminance `lum`."""
    return _encode(lum)


def blend_over(top: str, opacity: float, under_lum: float) -> float:
    """Luminance of `top` at `opacity` composited (in sRGB, as browsers do) over a grey of `under_lum`."""
    g = grey_for_luminance(under_lum)
    return relative_luminance([opacity * c + (1.0 - opacity) * g for c in hex_to_rgb(top)])


# -- HLS ----------------------------------------------------------------------------------------------


def hls(color: Colour) -> tuple[float, float, float]:
    """(hue 0..1, lightness 0..1, saturation 0..1) of a hex colour or an RGB triple."""
    r, g, b = (c / 255.0 for c in _rgb(color)[:3])
    return colorsys.rgb_to_hls(r, g, b)


def rgb_from_hls(h: float, lightness: float, s: float) -> RGB:
    """The RGB triple of a hue (any real; taken modulo 1), lightness and saturation (clipped to 0..1)."""
    r, g, b = colorsys.hls_to_rgb(h % 1.0, min(1.0, max(0.0, lightness)), min(1.0, max(0.0, s)))
    return round(r * 255), round(g * 255), round(b * 255)


def from_hls(h: float, lightness: float, s: float) -> str:
    """`rgb_from_hls` as "#rrggbb"."""
    return rgb_to_hex(rgb_from_hls(h, lightness, s))


def saturation(color: str) -> float:
    return hls(color)[2]


def with_lightness(color: str, lightness: float, max_saturation: float = 0.9) -> str:
    h, _, s = hls(color)
    return from_hls(h, lightness, min(s, max_saturation))


# -- HSV ----------------------------------------------------------------------------------------------


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB 0..255 (..., 3) -> HSV float32 (..., 3): hue in degrees 0..360, saturation and value in 0..1."""
    c = np.asarray(rgb, dtype=np.float32)[..., :3] / 255.0
    mx, mn = c.max(axis=-1), c.min(axis=-1)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1.0)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    hue = np.where(
        mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    hue = np.where(delta > 0, hue * 60.0, 0.0)
    sat = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([hue, sat, mx], axis=-1).astype(np.float32)


def hsv(color: str) -> tuple[float, float, float]:
    """Hex colour -> (hue degrees 0..360, saturation 0..1, value 0..1)."""
    h, s, v = rgb_to_hsv(np.asarray(hex_to_rgb(color))).tolist()
    return h, s, v


def hue_distance(h1: float, h2: float) -> float:
    """Angular distance between two hues in degrees, 0..180."""
    d = abs(h1 - h2) % 360.0
    return min(d, 360.0 - d)
