"""What every finished ad must show, checked on its images and state (shared by the ad and variant tests)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from PIL import Image

from kernel.models import SIZES
from nodes.backends.compose import placed_cutout


def _lin(c: np.ndarray) -> np.ndarray:
    c = c / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def luminance(rgb: np.ndarray) -> np.ndarray:
    lin = _lin(rgb[..., :3].astype(np.float64))
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def hex_rgb(h: str) -> np.ndarray:
    return np.array([int(h[i : i + 2], 16) for i in (1, 3, 5)], np.float64)


def assert_product_whole_and_text_off_it(
    cutout: Image.Image, scene: Image.Image, layer: Image.Image, ad: Image.Image, values: dict[str, Any]
) -> None:
    """The product is whole inside the canvas with its own pixels; the text is there, off the product,
    and inside the canvas."""
    w, h = SIZES[values["size"]]
    assert scene.size == ad.size == (w, h)
    placement = values["placement"]
    product = np.asarray(placed_cutout(cutout, placement, (w, h)))
    alpha = product[..., 3]
    ys, xs = np.nonzero(alpha)
    # never cropped: every product pixel of the photo is on the canvas, away from the edges
    assert alpha.sum() > 0 and xs.min() > 0 and ys.min() > 0 and xs.max() < w - 1 and ys.max() < h - 1
    assert (alpha > 0).sum() >= 0.97 * (np.asarray(cutout)[..., 3] > 0).sum() * placement.scale**2
    assert 0.08 < (alpha > 0).mean() < 0.6  # a sensible share of the canvas
    solid = alpha == 255
    assert np.array_equal(np.asarray(scene)[solid], product[..., :3][solid])  # pixels preserved
    text = np.asarray(layer)[..., 3] > 0
    assert text.sum() > 2000
    assert not (text & (alpha > 0)).any()
    for box in values["text_boxes"].values():
        assert box.inside(w, h)


async def assert_text_reads_at_4_5_to_1(
    renderer: Any, values: dict[str, Any], scene: Image.Image, ad: Image.Image
):
    """Render the same layer with invisible text: what is left is exactly what lies under each glyph;
    each block's glyphs read at 4.5:1 against it, and their cores are the designed colour."""
    html, design = values["text_layer_html"], values["design"]
    scene_px, ad_px = (np.asarray(i.convert("RGB")).astype(np.int16) for i in (scene, ad))
    bare_html = re.sub(r"(?<![-\w])color: #[0-9a-fA-F]{6}", "color: transparent", html)
    assert bare_html != html
    bare_layer, _ = await renderer.render_layer(bare_html, (ad_px.shape[1], ad_px.shape[0]))
    under = Image.alpha_composite(Image.fromarray(scene_px.astype(np.uint8)).convert("RGBA"), bare_layer)
    under_px = np.asarray(under.convert("RGB")).astype(np.int16)
    for block in design.blocks:
        b = block.box
        glyphs = np.abs(ad_px - under_px)[b.y : b.bottom, b.x : b.right].sum(axis=2) > 60
        assert glyphs.sum() > 300, f"{block.role}: no text drawn"
        text_l = luminance(hex_rgb(block.color))
        bg_l = luminance(under_px[b.y : b.bottom, b.x : b.right][glyphs])
        ratio = (np.maximum(text_l, bg_l) + 0.05) / (np.minimum(text_l, bg_l) + 0.05)
        assert np.percentile(ratio, 1) >= 4.5, (block.role, float(np.percentile(ratio, 1)))
        core = np.abs(ad_px[b.y : b.bottom, b.x : b.right][glyphs] - hex_rgb(block.color)).sum(axis=1) < 24
        assert core.mean() > 0.2, block.role
