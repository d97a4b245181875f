"""Turn a saliency map into a clean product matte, and a matte into a cut-out.

Pure numpy/cv2, no model: the segmenter (`nodes.backends.u2netp`) hands in a probability map, `clean_matte`
decides what the product is and how its edge looks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from kernel.errors import AdgraphError
from kernel.models import Box

# A pixel is surely product at `HIGH`; a region connected to such pixels stays product down to `LOW`
# (hysteresis), so a dish whose plate the model scores ~0.3 keeps its plate, while faint blobs with no
# confident core are dropped.
HIGH = 0.5
LOW = 0.2
# Beside the main item, keep items at least this share of its (confident) area: a pair of shoes, a cup
# and its saucer. Smaller blobs are specks.
KEEP_RATIO = 0.3
# The main item must cover this share of the photo, or there is no product worth cutting out.
MIN_PRODUCT_SHARE = 0.001
# A hole inside the product stays open only if it is large (a mug's handle, a ring) and the model is sure
# it is background; smaller or doubtful holes are glare or dark print on the product and get filled.
OPEN_HOLE_SHARE = 0.01
OPEN_HOLE_MAX_PROB = 0.1
# Cleanup runs at most at this size (long side) and the matte is scaled up after: the model sees 320x320, so
# a finer map carries no more detail, only more pixels to label.
WORK_MAX_SIDE = 1024


def clean_matte(
    prob: np.ndarray,
    *,
    size: tuple[int, int] | None = None,
    high: float = HIGH,
    low: float = LOW,
    keep_ratio: float = KEEP_RATIO,
) -> np.ndarray:
    """Return a uint8 matte (255 = product) from a saliency map in 0..1 (uint8 maps count as /255).

    The main connected item and any other item at least `keep_ratio` of its size are kept, specks are
    dropped, holes filled; the interior is exactly 255, everything beyond a thin band around the edge is 0,
    and the band carries a feathered alpha a couple of pixels wide (scaled with the image). The matte has the
    map's shape, or `size` (width, height) if given: a small map can be cleaned and scaled up in one go.
    """
    p = _as_prob(prob)
    out_w, out_h = size if size is not None else (p.shape[1], p.shape[0])
    if out_w < 1 or out_h < 1:
        raise AdgraphError("INVALID_INPUT", f"a matte must be at least 1x1, got {out_w}x{out_h}")
    ww, wh = work_size(p.shape[1], p.shape[0])
    if (ww, wh) != (p.shape[1], p.shape[0]):
        p = cv2.resize(p, (ww, wh), interpolation=cv2.INTER_AREA)
    mask = _product_mask(p, high=high, low=low, keep_ratio=keep_ratio)
    mask = _fill_holes(mask, p)
    mask = _refine_edge(mask, p)
    matte = _feather(mask, p, high=high, low=low)
    if (out_w, out_h) != (ww, wh):
        # Linear keeps 255 inside and 0 outside exactly, and widens the feather in proportion.
        shrink = out_w < ww or out_h < wh
        matte = cv2.resize(
            matte, (out_w, out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return matte


def work_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) cleanup runs at: the input's own, or scaled to `WORK_MAX_SIDE` on the long side."""
    long_side = max(width, height)
    if long_side <= WORK_MAX_SIDE:
        return width, height
    k = WORK_MAX_SIDE / long_side
    return max(1, round(width * k)), max(1, round(height * k))


def make_cutout(photo: Image.Image, matte: Image.Image | np.ndarray) -> Image.Image:
    """RGBA, same size as `photo`: its own RGB pixels, unchanged, with `matte` as alpha."""
    alpha = _as_matte_image(matte)
    if alpha.size != photo.size:
        raise AdgraphError(
            "INVALID_INPUT",
            f"the matte is {alpha.size[0]}x{alpha.size[1]} but the photo is {photo.size[0]}x{photo.size[1]}",
            matte_size=list(alpha.size),
            photo_size=list(photo.size),
        )
    cutout = photo.convert("RGB").convert("RGBA")
    cutout.putalpha(alpha)
    return cutout


def matte_box(matte: Image.Image | np.ndarray) -> Box:
    """Bounding box of the pixels with alpha > 0."""
    a = np.asarray(_as_matte_image(matte))
    rows = np.flatnonzero(a.any(axis=1))
    cols = np.flatnonzero(a.any(axis=0))
    if rows.size == 0:
        raise AdgraphError("INVALID_INPUT", "the matte is empty: no product pixels to box")
    return Box(x=int(cols[0]), y=int(rows[0]), w=int(cols[-1] - cols[0] + 1), h=int(rows[-1] - rows[0] + 1))


# -- steps ---------------------------------------------------------------------------------------------


def _as_prob(prob: np.ndarray) -> np.ndarray:
    a = np.asarray(prob)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise AdgraphError(
            "INVALID_INPUT", f"a saliency map must be a non-empty 2-D array, got shape {a.shape}"
        )
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(a, 0.0, 1.0)


def _product_mask(p: np.ndarray, *, high: float, low: float, keep_ratio: float) -> np.ndarray:
    """Binary (0/1 uint8) mask of the kept items: hysteresis between `low` and `high`, then by size."""
    h, w = p.shape
    core = p >= high
    weak = (p >= low).astype(np.uint8)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    # Rank each region by its confident area: a wide faint region with a small core is not the product.
    core_area = np.bincount(labels[core], minlength=n)
    core_area[0] = 0
    main = int(core_area.max()) if n > 1 else 0
    if main < max(1, MIN_PRODUCT_SHARE * h * w):
        share = 100.0 * main / (h * w)
        raise AdgraphError(
            "INVALID_INPUT",
            "no product found in the photo; use a photo where the product is in focus and clearly stands "
            "out from the background (a plain or uncluttered backdrop works best)",
            salient_share_percent=round(share, 3),
        )
    keep = core_area >= keep_ratio * main
    keep[0] = False
    return keep[labels].astype(np.uint8)


def _fill_holes(mask: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Fill background pockets enclosed by the product, except large ones the model is sure about."""
    inv = (mask == 0).astype(np.uint8)
    # 4-connected background is the complement of 8-connected objects.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n <= 1:
        return mask
    outside = np.zeros(n, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the product itself here
    holes = ~outside
    if not holes.any():
        return mask
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    mean_p = np.bincount(labels.ravel(), weights=p.ravel(), minlength=n) / np.maximum(area, 1)
    product_area = float(mask.sum())
    open_hole = (area >= OPEN_HOLE_SHARE * product_area) & (mean_p < OPEN_HOLE_MAX_PROB)
    fill = holes & ~open_hole
    if not fill.any():
        return mask
    return np.maximum(mask, fill[labels].astype(np.uint8))


def _refine_edge(mask: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pull the edge in to where the probability is half its local peak.

    Hysteresis puts the edge on the `low` contour, a couple of pixels outside a confident object (a pale halo
    on a white backdrop). Near the edge, a pixel stays product only at >= half the highest probability
    around it: that is the 0.5 contour beside a confident object, and still the plate's rim where the
    model only gives the whole plate ~0.3.
    """
    h, w = mask.shape
    d = max(3, math.ceil(max(h, w) / 160))  # about the width of the model's upscaled edge ramp
    rim = mask > cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1)))
    peak = cv2.dilate(p, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * d + 1, 2 * d + 1)))
    drop = rim & (p < 0.5 * peak)
    if not drop.any():
        return mask
    out = mask.copy()
    out[drop] = 0
    return out


def _feather(mask: np.ndarray, p: np.ndarray, *, high: float, low: float) -> np.ndarray:
    """Interior 255, outside 0, and a soft band of +-r pixels around the mask's edge."""
    h, w = mask.shape
    r = max(2, round(max(h, w) / 320))  # about one pixel of the model's 320x320 output
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    inner = cv2.erode(mask, kernel)
    outer = cv2.dilate(mask, kernel)
    band = (outer > 0) & (inner == 0)
    # b: the binary edge blurred (0.5 on the contour, ~1 and ~0 at the band's ends); q: the model's own
    # confidence. alpha = b * (b + (1 - b) * q) meets 1 inside and 0 outside without a step, and pulls the
    # edge in where the model was unsure.
    b = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=r / 2.0, borderType=cv2.BORDER_REPLICATE)
    q = np.clip((p - low) / max(high - low, 1e-6), 0.0, 1.0)
    alpha = np.zeros((h, w), np.float32)
    bb, qb = b[band], q[band]
    alpha[band] = bb * (bb + (1.0 - bb) * qb)
    out = np.rint(alpha * 255.0).astype(np.uint8)
    out[inner > 0] = 255
    return out


def _as_matte_image(matte: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(matte, Image.Image):
        if matte.mode == "L":
            return matte
        if matte.mode in ("RGBA", "LA", "PA"):
            return matte.getchannel("A")
        return matte.convert("L")
    a = np.asarray(matte)
    if a.ndim != 2:
        raise AdgraphError("INVALID_INPUT", f"a matte must be a 2-D array, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        a = np.rint(np.clip(a, 0.0, 1.0) * 255.0)
    a = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(a, "L")
