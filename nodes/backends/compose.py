"""Embedded compositor: stand the cut-out product on the backdrop, with a soft contact shadow.

Layout (all in canvas pixels, `m` = 4.5 % of the short side):

- landscape (width / height >= 1.5, e.g. 1200x628): the text area is the left ~55 %, the product stands
  in the right part (at most 42 % of the width and 80 % of the height), its base 8 % above the bottom.
  `text_position` does not change this layout.
- square and portrait, `text_position` "top", "center" or "auto": the text area is a band at the top
  (38 % of the height, 36 % on tall canvases); the product stands below it, centred, its base 10 % above
  the bottom edge, i.e. on the floor of a studio backdrop whose horizon is 60-70 % down.
- square and portrait, "bottom": the text band is at the bottom and the product stands above it.

The product is scaled by one uniform factor to fill its slot (never more than 2.5x up), so it is never
cropped and keeps at least `m` from every edge. Its pixels are copied, not regenerated: where the
(scaled, lightly feathered) matte is opaque the scene holds exactly the scaled cut-out's pixels. The
shadows are drawn first and fade out before the text area, which is left exactly as the backdrop.
"""

from __future__ import annotations

import asyncio
import math

import cv2
import numpy as np
from PIL import Image

from kernel.errors import AdgraphError
from kernel.models import TEXT_POSITIONS, Box, Placement

MARGIN = 0.045
"""Free space kept around the canvas edge, as a share of the short side."""
GAP = 0.03
"""Space between the text area and the product slot, as a share of the canvas height (width in landscape)."""
MAX_UPSCALE = 2.5
FEATHER_SIGMA = 0.7
"""Gaussian sigma (canvas px) of the edge feather; it only ever lowers the matte, never widens it."""


class StudioCompositor:
    """The embedded `Compositor`: fixed layout, matte alpha blend, multiply-darkened contact shadow."""

    name = "studio"

    async def compose(
        self, *, background: Image.Image, cutout: Image.Image, text_position: str
    ) -> tuple[Image.Image, Placement]:
        return await asyncio.to_thread(
            compose, background=background, cutout=cutout, text_position=text_position
        )


def compose(
    *, background: Image.Image, cutout: Image.Image, text_position: str
) -> tuple[Image.Image, Placement]:
    """Place `cutout` (RGBA, alpha = product matte) on `background` (the canvas) and say where it went.

    Returns the RGB scene and a `Placement`:

    - `scale`: factor applied to the original photo's pixels;
    - `x`, `y`: where the original photo's top-left lands on the canvas;
    - `product_box`: bounding box of the placed matte (alpha > 0);
    - `text_area`: the part of the canvas kept free for the text (never intersects `product_box`).

    The product layer is reproduced exactly by `placed_cutout(cutout, placement, canvas_size)`:

        l, t, r, b = cutout.getchannel("A").getbbox()      # the crop box, ends exclusive
        size = (max(1, round((r - l) * scale)), max(1, round((b - t) * scale)))
        layer = premultiply the crop, halve it with cv2.pyrDown while size allows, cv2.resize to size
                (INTER_AREA shrinking, INTER_CUBIC enlarging), un-premultiply   # see `_scaled_layer`
        alpha = min(alpha, GaussianBlur(alpha, FEATHER_SIGMA))              # see `_feather`
        left, top = x + round(l * scale), y + round(t * scale)

    Where that layer's alpha is 255 the scene's pixel equals the layer's RGB; where it is 0 the scene is
    the background (plus the shadow); in between Pillow's `paste` blends the two by alpha.
    """
    if text_position not in TEXT_POSITIONS:
        raise AdgraphError(
            "INVALID_INPUT",
            f"text_position {text_position!r} is not one of {', '.join(TEXT_POSITIONS)}",
            text_position=text_position,
        )
    cutout = _rgba(cutout)
    bbox = cutout.getchannel("A").getbbox()
    if bbox is None:
        raise AdgraphError(
            "INVALID_IMAGE",
            "the cut-out's matte is empty: no product was found in the photo",
            size=cutout.size,
        )
    canvas = background.convert("RGB") if background.mode != "RGB" else background
    width, height = canvas.size
    text_area, slot = layout(width, height, text_position)

    crop_w, crop_h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    scale = min(slot.w / crop_w, slot.h / crop_h, MAX_UPSCALE)
    layer = _scaled_layer(np.asarray(cutout.crop(bbox)), scale)
    left = slot.x + (slot.w - layer.shape[1]) // 2
    top = slot.bottom - layer.shape[0]  # the product's base rests on the slot's bottom edge

    scene = canvas.copy()
    _draw_shadow(scene, layer[..., 3], left, top, clear=text_area)
    product = Image.fromarray(layer, "RGBA")
    scene.paste(product, (left, top), product)  # Pillow blends with the alpha; 255 copies exactly

    ys, xs = _nonzero_span(layer[..., 3])
    product_box = Box(x=left + xs[0], y=top + ys[0], w=xs[1] - xs[0], h=ys[1] - ys[0])
    if product_box.intersection(text_area) or not product_box.inside(width, height):
        raise AssertionError(f"layout bug: product {product_box} vs text {text_area} on {width}x{height}")
    placement = Placement(
        scale=scale,
        x=left - round(bbox[0] * scale),
        y=top - round(bbox[1] * scale),
        product_box=product_box,
        text_area=text_area,
    )
    return scene, placement


def layout(width: int, height: int, text_position: str) -> tuple[Box, Box]:
    """The text area and the product slot (the box the scaled product must fit, base on its bottom edge)."""
    short = min(width, height)
    m = math.ceil(MARGIN * short)
    if width / height >= 1.5:
        gap = round(GAP * width)
        split = round(0.55 * width)
        text_area = Box(x=m, y=m, w=split - gap - m, h=height - 2 * m)
        room = width - m - split
        slot_w = min(room, round(0.42 * width))
        base = min(height - m, height - round(0.08 * height))
        slot_h = min(round(0.80 * height), base - m)
        return text_area, Box(x=split + (room - slot_w) // 2, y=base - slot_h, w=slot_w, h=slot_h)

    gap = round(GAP * height)
    band = round((0.36 if height / width >= 1.3 else 0.38) * height)
    slot_w = min(width - 2 * m, round(0.75 * width))
    slot_x = (width - slot_w) // 2
    if text_position == "bottom":
        text_area = Box(x=m, y=height - m - band, w=width - 2 * m, h=band)
        base = text_area.y - gap - round(0.04 * height)  # room for the shadow above the text
        return text_area, Box(x=slot_x, y=m, w=slot_w, h=base - m)
    text_area = Box(x=m, y=m, w=width - 2 * m, h=band)
    slot_top = text_area.bottom + gap
    base = min(height - m, height - round(0.10 * height))
    return text_area, Box(x=slot_x, y=slot_top, w=slot_w, h=base - slot_top)


def placed_cutout(cutout: Image.Image, placement: Placement, canvas_size: tuple[int, int]) -> Image.Image:
    """The scaled, feathered product layer exactly as `compose` blended it, on a transparent canvas (RGBA)."""
    cutout = _rgba(cutout)
    bbox = cutout.getchannel("A").getbbox()
    if bbox is None:
        raise ValueError("the cut-out's matte is empty")
    layer = _scaled_layer(np.asarray(cutout.crop(bbox)), placement.scale)
    left = placement.x + round(bbox[0] * placement.scale)
    top = placement.y + round(bbox[1] * placement.scale)
    out = Image.new("RGBA", canvas_size, (0, 0, 0, 0))
    out.paste(Image.fromarray(layer, "RGBA"), (left, top))
    return out


def _rgba(cutout: Image.Image) -> Image.Image:
    if "A" not in cutout.getbands():
        raise AdgraphError(
            "INVALID_IMAGE",
            f"the cut-out must carry the matte as alpha, got mode {cutout.mode!r}",
            mode=cutout.mode,
        )
    return cutout if cutout.mode == "RGBA" else cutout.convert("RGBA")


def _scaled_layer(crop: np.ndarray, scale: float) -> np.ndarray:
    """Resize the cropped RGBA cut-out by `scale` and feather its matte.

    The resize runs on premultiplied colour, so the photo's background under alpha 0 cannot bleed into
    the edge: `cv2.cvtColor(crop, COLOR_RGBA2mRGBA)`; while the target is at most half the current size,
    `cv2.pyrDown`; then `cv2.resize` to `(max(1, round(w * scale)), max(1, round(h * scale)))` with
    `INTER_AREA` when shrinking and `INTER_CUBIC` when enlarging; then `COLOR_mRGBA2RGBA`. Opaque pixels
    survive the premultiply round trip exactly.
    """
    h, w = crop.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    layer = cv2.cvtColor(crop, cv2.COLOR_RGBA2mRGBA)
    while 2 * size[0] <= layer.shape[1] and 2 * size[1] <= layer.shape[0]:
        layer = cv2.pyrDown(layer)  # fast, alias-free halving; INTER_AREA is slow on big inputs
    if size != (layer.shape[1], layer.shape[0]):
        shrink = size[0] * size[1] < layer.shape[0] * layer.shape[1]
        layer = cv2.resize(layer, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    layer = cv2.cvtColor(layer, cv2.COLOR_mRGBA2RGBA)
    layer[..., 3] = _feather(layer[..., 3])
    return layer


def _feather(alpha: np.ndarray) -> np.ndarray:
    """Soften a hard matte edge by about a pixel, inwards only: interior stays 255, outside stays 0."""
    blurred = cv2.GaussianBlur(alpha, (0, 0), FEATHER_SIGMA, borderType=cv2.BORDER_CONSTANT)
    return np.minimum(alpha, blurred)


def _draw_shadow(scene: Image.Image, alpha: np.ndarray, left: int, top: int, *, clear: Box) -> None:
    """Multiply-darken the floor under the product: a tight contact core, a wider soft ambient pool and a
    faint drop shadow of the matte. Drawn at reduced resolution and before the product, so never over it;
    it fades out towards `clear` (the text area) and leaves that area untouched."""
    width, height = scene.size
    h, w = alpha.shape
    ys, xs = _nonzero_span(alpha > 128)
    if ys[1] == ys[0]:  # a wisp of a matte: use whatever is there
        ys, xs = _nonzero_span(alpha)
    base = ys[1]  # first row below the product
    foot_rows = alpha[max(ys[0], base - max(2, round(0.03 * h))) : base] > 128
    foot_cols = np.flatnonzero(foot_rows.any(axis=0)) if foot_rows.size else np.empty(0, int)
    f0, f1 = (foot_cols[0], foot_cols[-1] + 1) if foot_cols.size else xs
    span = xs[1] - xs[0]
    foot = max(f1 - f0, 0.35 * span)

    core_rx = 0.5 * foot + 0.02 * span
    # Perspective flattens the shadows; a low, wide product casts a shallow one.
    core_ry = max(1.5, min(0.13 * core_rx, 0.12 * h))
    amb_rx = max(core_rx * 1.3, 0.55 * span)
    amb_ry = max(2.0, min(0.13 * amb_rx, 0.3 * h))
    cx, cy = left + (f0 + f1) / 2.0, top + base
    drop_sigma = 0.035 * max(h, w)
    drop_dx, drop_dy = 0.02 * w, 0.012 * h

    # The window the shadow can reach, in canvas pixels, and its reduced-resolution raster.
    pad = int(3 * max(amb_ry, drop_sigma)) + 4
    x0 = max(0, int(min(left - pad, cx - amb_rx - pad)))
    x1 = min(width, int(max(left + w + pad + drop_dx, cx + amb_rx + pad)))
    y0 = max(0, top - pad)
    y1 = min(height, int(cy + amb_ry + pad))
    if x1 <= x0 or y1 <= y0:
        return
    f = int(np.clip(round(span / 120), 1, 4))
    sw, sh = math.ceil((x1 - x0) / f), math.ceil((y1 - y0) / f)

    def ellipse(rx: float, ry: float, dy: float, strength: float, sigma: float) -> np.ndarray:
        img = np.zeros((sh, sw), np.float32)
        # cv2 draws with integer coordinates; shift=4 gives 1/16 px precision.
        centre = (round((cx - x0) / f * 16), round((cy + dy - y0) / f * 16))
        axes = (max(1, round(rx / f * 16)), max(1, round(ry / f * 16)))
        cv2.ellipse(img, centre, axes, 0, 0, 360, strength, -1, cv2.LINE_AA, 4)
        return cv2.GaussianBlur(img, (0, 0), max(0.5, sigma / f))

    core = ellipse(core_rx, core_ry, -0.4 * core_ry, 0.55, 1.2 * core_ry)
    ambient = ellipse(amb_rx, amb_ry, 0.25 * amb_ry, 0.33, 1.1 * amb_ry)

    drop = np.zeros((sh, sw), np.float32)
    small = cv2.resize(alpha, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    ox, oy = round((left + drop_dx - x0) / f), round((top + drop_dy - y0) / f)
    _paste_clipped(drop, small.astype(np.float32) * (0.10 / 255.0), ox, oy)
    drop = cv2.GaussianBlur(drop, (0, 0), max(0.5, drop_sigma / f))

    dark = 1.0 - (1.0 - core) * (1.0 - ambient) * (1.0 - drop)  # share of light the product blocks
    # Fade out over `fade` px towards the text area, then cut it out exactly.
    cols = (np.arange(sw, dtype=np.float32) + 0.5) * f + x0
    rows = (np.arange(sh, dtype=np.float32) + 0.5) * f + y0
    dx = np.maximum(np.maximum(clear.x - cols, cols - clear.right), 0.0)
    dy = np.maximum(np.maximum(clear.y - rows, rows - clear.bottom), 0.0)
    fade = 0.04 * min(width, height)
    t = np.clip(np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2) / fade, 0.0, 1.0)
    dark *= t * t * (3.0 - 2.0 * t)
    dark8 = (dark * 255.0 + 0.5).astype(np.uint8)
    dark8 = cv2.resize(dark8, (sw * f, sh * f), interpolation=cv2.INTER_LINEAR)[: y1 - y0, : x1 - x0]
    cx0, cy0 = max(clear.x - x0, 0), max(clear.y - y0, 0)
    dark8[cy0 : max(clear.bottom - y0, 0), cx0 : max(clear.right - x0, 0)] = 0
    # Pasting black through the mask scales each pixel by (1 - dark): a multiply with a grey shadow.
    scene.paste((0, 0, 0), (x0, y0), Image.fromarray(np.ascontiguousarray(dark8), "L"))


def _paste_clipped(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    h, w = src.shape
    dx0, dy0 = max(0, x), max(0, y)
    dx1, dy1 = min(dst.shape[1], x + w), min(dst.shape[0], y + h)
    if dx1 > dx0 and dy1 > dy0:
        dst[dy0:dy1, dx0:dx1] = src[dy0 - y : dy1 - y, dx0 - x : dx1 - x]


def _nonzero_span(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) of the nonzero part of a 2-D array, ends exclusive; zeros if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0), (0, 0)
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)
