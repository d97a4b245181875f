"""Embedded scene analyzer: free regions, product colours and brightness from plain image statistics.

Everything is measured on the scene reduced by an integer box filter to a short side of about 270 px
(reduction factor `k`), which keeps the analysis well under the per-step budget and makes gradient
energies comparable across canvas sizes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from kernel.color import hue_distance, luminance_map, rgb_to_hex, rgb_to_hsv
from kernel.models import Box, Placement, Region, SceneAnalysis

ANALYSIS_SHORT_SIDE = 270
EDGE_MARGIN = 0.04
"""Distance kept from the canvas edge by the band regions, as a share of the short side."""
PRODUCT_GAP = 0.02
"""Distance kept from the product box by every region, as a share of the short side."""
MIN_REGION = (0.25, 0.12)
"""A band narrower than 25 % of the canvas width or lower than 12 % of its height cannot hold text."""
BUSY_GRADIENT = 0.025
"""Mean gradient magnitude (grey levels 0..1 per analysis pixel) at which emptiness falls to 1/e."""
TEXT_AREA_BONUS = 1.5
"""The compositor reserved `text_area` for the text, so it wins unless it is clearly worse."""
GRID = 8
"""The brightness grid is GRID x GRID cells over the whole scene."""
SAMPLES = 4000
"""Pixels sampled for a colour quantisation: plenty for six colours, and quick."""
MERGE_DISTANCE = 64
"""Quantised colours closer than this (sum of |dR|, |dG|, |dB|) count as one shade of a colour."""


class StatsAnalyzer:
    """The embedded `Analyzer`: numpy / OpenCV / PIL measurements, no model."""

    name = "stats"

    async def analyze(
        self,
        *,
        scene: Image.Image,
        placement: Placement,
        fallback: Callable[[str, str], None] | None = None,
    ) -> SceneAnalysis:
        """Everything is measured, so nothing ever falls back."""
        return await asyncio.to_thread(analyze_scene, scene, placement)


def analyze_scene(scene: Image.Image, placement: Placement) -> SceneAnalysis:
    """Measure `scene` around the product that `placement` put there."""
    rgb_scene = scene if scene.mode == "RGB" else scene.convert("RGB")
    width, height = rgb_scene.size
    k = max(1, round(min(width, height) / ANALYSIS_SHORT_SIDE))
    small = np.asarray(rgb_scene.reduce(k) if k > 1 else rgb_scene)
    lum = luminance_map(small)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
    # Scharr responds 32x to a ramp of one grey level per pixel: divide to get a per-pixel gradient.
    gx = cv2.Scharr(grey, cv2.CV_32F, 1, 0, scale=1.0 / 32.0)
    gy = cv2.Scharr(grey, cv2.CV_32F, 0, 1, scale=1.0 / 32.0)
    gradient = cv2.magnitude(gx, gy)

    product = placement.product_box
    regions = [
        _measure(name, box, small, lum, gradient, k)
        for name, box in candidate_boxes(placement, width, height)
    ]
    regions = _rank(regions, width, height)
    dominant, accent, palette = product_colors(small, product, k)
    grid = cv2.resize(lum, (GRID, GRID), interpolation=cv2.INTER_AREA)
    return SceneAnalysis(
        product_box=product,
        regions=regions,
        dominant=dominant,
        accent=accent,
        palette=palette,
        brightness=[[round(float(v), 4) for v in row] for row in grid],
    )


def candidate_boxes(placement: Placement, width: int, height: int) -> list[tuple[str, Box]]:
    """The reserved text area and the bands above, below, left and right of the product, none of them
    within `PRODUCT_GAP` of the product box; bands too small for text are left out."""
    short = min(width, height)
    e = math.ceil(EDGE_MARGIN * short)
    g = math.ceil(PRODUCT_GAP * short)
    p = placement.product_box
    keep_out = p.expand(g)
    out: list[tuple[str, Box]] = []
    text_area = placement.text_area.clip(Box(x=0, y=0, w=width, h=height))
    text_area = text_area.avoid(keep_out) if text_area.area else None
    if text_area is not None:
        out.append(("text_area", text_area))
    bands = {
        "top": Box(x=e, y=e, w=width - 2 * e, h=keep_out.y - e),
        "bottom": Box(x=e, y=keep_out.bottom, w=width - 2 * e, h=height - e - keep_out.bottom),
        "left": Box(x=e, y=e, w=keep_out.x - e, h=height - 2 * e),
        "right": Box(x=keep_out.right, y=e, w=width - e - keep_out.right, h=height - 2 * e),
    }
    for name, box in bands.items():
        if box.w >= MIN_REGION[0] * width and box.h >= MIN_REGION[1] * height:
            out.append((name, box))
    return out


def region_score(region: Region, width: int, height: int) -> float:
    """Higher is better: emptiness first, then usable area; the reserved text area gets a bonus."""
    share = region.box.area / float(width * height)
    bonus = TEXT_AREA_BONUS if region.name == "text_area" else 1.0
    return (0.2 + 0.8 * region.emptiness) * math.sqrt(share) * bonus


def product_colors(small: np.ndarray, product: Box, k: int) -> tuple[str, str, list[str]]:
    """Dominant colour, accent colour and palette (up to 5, most frequent first) of the product.

    `small` is the scene reduced by `k`. The scene carries no matte, so the product is sampled inside the
    ellipse inscribed in its box, minus pixels that match the backdrop seen just outside the box.
    `dominant` is the most frequent colour; `accent` the most saturated colour clearly distinct from it
    (the dominant colour again when there is none).
    """
    palette = _palette(_product_pixels(small, product, k))[:5]
    dominant = palette[0][0]
    hsv = rgb_to_hsv(np.stack([colour for colour, _ in palette]))
    accent, best = dominant, 0.15  # greys are no accent
    for (colour, share), (hue, sat, val) in zip(palette[1:], hsv[1:], strict=True):
        distinct = hue_distance(float(hue), float(hsv[0, 0])) >= 30 or np.abs(colour - dominant).sum() >= 120
        vivid = float(sat) * math.sqrt(float(val))
        if distinct and share >= 0.02 and vivid > best:
            accent, best = colour, vivid
    return rgb_to_hex(dominant), rgb_to_hex(accent), [rgb_to_hex(c) for c, _ in palette]


def _product_pixels(small: np.ndarray, product: Box, k: int) -> np.ndarray:
    """Up to about `SAMPLES` RGB pixels (N, 3) that most likely belong to the product."""
    h, w = small.shape[:2]
    x0, y0 = min(w - 1, max(0, product.x // k)), min(h - 1, max(0, product.y // k))
    x1, y1 = max(x0 + 1, min(w, -(-product.right // k))), max(y0 + 1, min(h, -(-product.bottom // k)))
    ch, cw = y1 - y0, x1 - x0
    yy, xx = np.mgrid[0:ch, 0:cw]
    inside = ((xx + 0.5 - cw / 2) / (0.48 * cw)) ** 2 + ((yy + 0.5 - ch / 2) / (0.48 * ch)) ** 2 <= 1.0
    crop = small[y0:y1, x0:x1]
    pixels = crop[inside] if inside.any() else crop.reshape(-1, 3)
    pixels = pixels[:: max(1, pixels.shape[0] // SAMPLES)]
    ring = _ring(small, x0, y0, x1, y1, max(2, round(0.02 * max(cw, ch))))
    if ring.shape[0]:
        pixels = _drop_backdrop(pixels, ring[:: max(1, ring.shape[0] // SAMPLES)])
    return pixels


def _palette(pixels: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Quantise to 6 colours (median cut), merge shades of one colour, most frequent first: (rgb, share)."""
    quant = Image.fromarray(np.ascontiguousarray(pixels.reshape(1, -1, 3)), "RGB").quantize(
        colors=6, method=Image.Quantize.MEDIANCUT
    )
    flat = quant.getpalette() or []
    groups: list[tuple[np.ndarray, float]] = []
    for count, i in sorted(quant.getcolors() or [], reverse=True):
        colour = np.asarray(flat[3 * i : 3 * i + 3], dtype=np.float64)
        for j, (mean, n) in enumerate(groups):
            if np.abs(mean - colour).sum() < MERGE_DISTANCE:
                groups[j] = ((mean * n + colour * count) / (n + count), n + count)
                break
        else:
            groups.append((colour, float(count)))
    groups.sort(key=lambda g: g[1], reverse=True)
    return [(np.rint(mean).astype(np.int32), n / pixels.shape[0]) for mean, n in groups]


def _measure(name: str, box: Box, small: np.ndarray, lum: np.ndarray, gradient: np.ndarray, k: int) -> Region:
    h, w = lum.shape
    x0, y0 = min(w - 1, -(-box.x // k)), min(h - 1, -(-box.y // k))  # inner rounding: stay inside the box
    x1, y1 = max(x0 + 1, min(w, box.right // k)), max(y0 + 1, min(h, box.bottom // k))
    region_lum = lum[y0:y1, x0:x1]
    lo, hi = np.percentile(region_lum, (2, 98))
    mean_gradient = float(gradient[y0:y1, x0:x1].mean())
    return Region(
        name=name,
        box=box,
        emptiness=round(math.exp(-mean_gradient / BUSY_GRADIENT), 4),
        luminance=round(float(region_lum.mean()), 4),
        luminance_range=(round(float(lo), 4), round(float(hi), 4)),
        color=rgb_to_hex(small[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)),
    )


def _rank(regions: list[Region], width: int, height: int) -> list[Region]:
    """Best first; a band that mostly repeats a better region (or the text area) is dropped."""
    ranked = sorted(regions, key=lambda r: region_score(r, width, height), reverse=True)
    reserved = [r for r in ranked if r.name == "text_area"]
    kept: list[Region] = []
    for region in ranked:
        others = kept + [r for r in reserved if r not in kept]
        if region.name == "text_area" or all(region.box.iou(o.box) < 0.6 for o in others):
            kept.append(region)
    return kept


def _ring(small: np.ndarray, x0: int, y0: int, x1: int, y1: int, t: int) -> np.ndarray:
    """Pixels of a `t`-wide frame just outside the box (x0, y0, x1, y1), as (N, 3)."""
    h, w = small.shape[:2]
    ox0, oy0, ox1, oy1 = max(0, x0 - t), max(0, y0 - t), min(w, x1 + t), min(h, y1 + t)
    parts = [
        small[oy0:y0, ox0:ox1],
        small[y1:oy1, ox0:ox1],
        small[y0:y1, ox0:x0],
        small[y0:y1, x1:ox1],
    ]
    return np.concatenate([p.reshape(-1, 3) for p in parts], axis=0)


def _drop_backdrop(pixels: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Remove pixels within a small RGB distance of the backdrop colours seen around the product."""
    strip = Image.fromarray(np.ascontiguousarray(ring.reshape(1, -1, 3)), "RGB").quantize(colors=4)
    flat = strip.getpalette() or []
    used = [i for _, i in strip.getcolors() or []]
    backdrop = np.asarray([flat[3 * i : 3 * i + 3] for i in used], dtype=np.int32)
    dist = np.abs(pixels.astype(np.int32)[:, None, :] - backdrop[None, :, :]).sum(axis=2).min(axis=1)
    product = pixels[dist > 30]
    return product if product.shape[0] >= 0.2 * pixels.shape[0] else pixels
