"""Colour helpers shared by the backends and the agents: hex <-> RGB, WCAG luminance and contrast, hue.

All functions are pure. Colours are "#rrggbb" strings or (r, g, b) tuples of 0..255 ints; luminances
are WCAG 2.x relative luminances in 0..1 (https://www.w3.org/TR/WCAG21/#dfn-relative-luminance).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RGB = tuple[int, int, int]

# sRGB 8-bit value -> linear light, per the WCAG formula (threshold 0.04045, as in IEC 61966-2-1).
_SRGB = np.arange(256, dtype=np.float64) / 255.0
LINEAR_LUT: np.ndarray = np.where(_SRGB <= 0.04045, _SRGB / 12.92, ((_SRGB + 0.055) / 1.055) ** 2.4).astype(
    np.float32
)
LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)
"""Weights of linear R, G, B in relative luminance."""


def hex_to_rgb(color: str) -> RGB:
    """Parse "#rrggbb" or "#rgb" (the "#" optional, any case) into (r, g, b); ValueError on anything else."""
    s = color.strip().removeprefix("#")
    if len(s) == 3:
        s = "".join(c * 2 for c in s)
    if len(s) != 6:
        raise ValueError(f"not a hex colour: {color!r} (expected #rrggbb)")
    try:
        value = int(s, 16)
    except ValueError:
        raise ValueError(f"not a hex colour: {color!r} (expected #rrggbb)") from None
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def rgb_to_hex(rgb: Sequence[float]) -> str:
    """Format (r, g, b) in 0..255 (floats are rounded and clipped) as "#rrggbb"."""
    r, g, b = (int(min(255, max(0, round(float(c))))) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def relative_luminance(color: str | Sequence[float]) -> float:
    """WCAG relative luminance (0 black .. 1 white) of a hex colour or an (r, g, b) 0..255 triple."""
    rgb = hex_to_rgb(color) if isinstance(color, str) else tuple(color[:3])
    lin = [_linear(c) for c in rgb]
    return float(LUMA_WEIGHTS[0] * lin[0] + LUMA_WEIGHTS[1] * lin[1] + LUMA_WEIGHTS[2] * lin[2])


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


def contrast(color_a: str, color_b: str) -> float:
    """WCAG contrast ratio (1..21) between two hex colours."""
    return contrast_ratio(relative_luminance(color_a), relative_luminance(color_b))


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


def _linear(c: float) -> float:
    s = float(c) / 255.0
    return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4
