"""Small WCAG colour helpers for the agents (pure; the agents never import from `nodes/`).

Colours are "#rrggbb" strings; luminances are WCAG 2.x relative luminances in 0..1.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Sequence

HEX_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
WHITE = "#ffffff"
NEAR_BLACK = "#111111"


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """Parse "#rrggbb" or "#rgb" into (r, g, b) 0..255; ValueError on anything else."""
    s = color.strip().removeprefix("#")
    if len(s) == 3:
        s = "".join(c * 2 for c in s)
    if len(s) != 6 or any(c not in "0123456789abcdefABCDEF" for c in s):
        raise ValueError(f"not a hex colour: {color!r} (expected #rrggbb)")
    v = int(s, 16)
    return (v >> 16) & 255, (v >> 8) & 255, v & 255


def rgb_to_hex(rgb: Sequence[float]) -> str:
    r, g, b = (int(min(255, max(0, round(float(c))))) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _linear(c: float) -> float:
    s = c / 255.0
    return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4


def _encode(lin: float) -> float:
    """Linear light 0..1 -> sRGB 0..255 (float)."""
    lin = min(1.0, max(0.0, lin))
    s = lin * 12.92 if lin <= 0.0031308 else 1.055 * lin ** (1 / 2.4) - 0.055
    return s * 255.0


def luminance_rgb(rgb: Sequence[float]) -> float:
    r, g, b = (_linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def luminance(color: str) -> float:
    """WCAG relative luminance of a hex colour."""
    return luminance_rgb(hex_to_rgb(color))


def ratio(l1: float, l2: float) -> float:
    """WCAG contrast ratio between two relative luminances, in either order."""
    hi, lo = max(l1, l2), min(l1, l2)
    return (hi + 0.05) / (lo + 0.05)


def contrast(a: str, b: str) -> float:
    return ratio(luminance(a), luminance(b))


def worst_contrast(color: str, lum_range: tuple[float, float]) -> float:
    """Lowest contrast of `color` against any background luminance in `lum_range`.

    The contrast against a luminance band is lowest at one of its ends (or 1.0 if the colour's own
    luminance falls inside it, which the ends already imply is bad).
    """
    lc = luminance(color)
    lo, hi = min(lum_range), max(lum_range)
    if lo <= lc <= hi:
        return 1.0
    return min(ratio(lc, lo), ratio(lc, hi))


def grey_for_luminance(lum: float) -> float:
    """The sRGB channel value (0..255) of the grey with relative luminance `lum`."""
    return _encode(lum)


def blend_over(top: str, opacity: float, under_lum: float) -> float:
    """Luminance of `top` at `opacity` composited (in sRGB, as browsers do) over a grey of `under_lum`."""
    g = grey_for_luminance(under_lum)
    rgb = [opacity * c + (1.0 - opacity) * g for c in hex_to_rgb(top)]
    return luminance_rgb(rgb)


def hls(color: str) -> tuple[float, float, float]:
    r, g, b = (c / 255.0 for c in hex_to_rgb(color))
    return colorsys.rgb_to_hls(r, g, b)


def from_hls(h: float, lightness: float, s: float) -> str:
    r, g, b = colorsys.hls_to_rgb(h, min(1.0, max(0.0, lightness)), min(1.0, max(0.0, s)))
    return rgb_to_hex((r * 255, g * 255, b * 255))


def saturation(color: str) -> float:
    return hls(color)[2]


def with_lightness(color: str, lightness: float, max_saturation: float = 0.9) -> str:
    h, _, s = hls(color)
    return from_hls(h, lightness, min(s, max_saturation))
