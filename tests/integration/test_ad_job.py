"""What a user sees in a finished ad, made by the real embedded models, Chromium and SQLite."""

from __future__ import annotations

import re

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from checkpoints.history import find_snapshot, seed_branch
from graph.ad import INPUT_CONSUMERS
from graph.state import AD_NODES
from kernel.models import SIZES, AdCopy
from nodes.backends.compose import placed_cutout
from service.running import new_job_id, run_job

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _lin(c: np.ndarray) -> np.ndarray:
    c = c / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def luminance(rgb: np.ndarray) -> np.ndarray:
    lin = _lin(rgb[..., :3].astype(np.float64))
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def hex_rgb(h: str) -> np.ndarray:
    return np.array([int(h[i : i + 2], 16) for i in (1, 3, 5)], np.float64)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def coffee_job(env, coffee):
    return await env.run(coffee)


def images(env, result, *keys):
    return [env.ctx.artifacts.open_image_sync(result.values[k]) for k in keys]


async def test_the_cutout_is_the_photos_own_pixels_with_the_product_matte(env, coffee, coffee_job) -> None:
    (cutout,) = images(env, coffee_job, "cutout")
    assert cutout.mode == "RGBA" and cutout.size == coffee.size
    px, photo = np.asarray(cutout), np.asarray(coffee)
    inside = px[..., 3] > 0
    assert np.array_equal(px[..., :3][inside], photo[inside])
    assert px[coffee.height // 2, coffee.width // 2, 3] == 255  # the cup is in
    assert px[0, 0, 3] == 0 and px[-1, -1, 3] == 0  # the table is out


@pytest.mark.parametrize("photo_name", ["coffee", "banana", "fish_plate"])
@pytest.mark.parametrize("size", list(SIZES))
async def test_the_product_is_whole_inside_the_canvas_with_its_own_pixels_and_no_text_on_it(
    env, request, photo_name, size
) -> None:
    photo = request.getfixturevalue(photo_name)
    result = await env.run(photo, size=size, text_position="auto")
    cutout, scene, layer, ad = images(env, result, "cutout", "scene", "text_layer", "ad")
    w, h = SIZES[size]
    assert scene.size == ad.size == (w, h)
    placement = result.values["placement"]
    product = np.asarray(placed_cutout(cutout, placement, (w, h)))
    alpha = product[..., 3]
    ys, xs = np.nonzero(alpha)
    # never cropped: every product pixel of the photo is on the canvas, away from the edges
    assert alpha.sum() > 0 and xs.min() > 0 and ys.min() > 0 and xs.max() < w - 1 and ys.max() < h - 1
    assert (alpha > 0).sum() >= 0.97 * (np.asarray(cutout)[..., 3] > 0).sum() * placement.scale**2
    assert 0.08 < (alpha > 0).mean() < 0.6  # a sensible share of the canvas
    solid = alpha == 255
    assert np.array_equal(np.asarray(scene)[solid], product[..., :3][solid])  # pixels preserved
    # the text is there, and none of it lies on the product
    text = np.asarray(layer)[..., 3] > 0
    assert text.sum() > 2000
    assert not (text & (alpha > 0)).any()
    for box in result.values["text_boxes"].values():
        assert box.inside(w, h)


async def test_every_text_block_reads_at_4_5_to_1_against_what_is_under_it(env, coffee_job) -> None:
    """Render the same layer with invisible text: what is left is exactly what lies under each glyph."""
    html = coffee_job.values["text_layer_html"]
    design = coffee_job.values["design"]
    scene, ad = (
        np.asarray(i.convert("RGB")).astype(np.int16) for i in images(env, coffee_job, "scene", "ad")
    )
    bare_html = re.sub(r"(?<![-\w])color: #[0-9a-fA-F]{6}", "color: transparent", html)
    assert bare_html != html
    bare_layer, _ = await env.ctx.renderer.render_layer(bare_html, (ad.shape[1], ad.shape[0]))
    under = Image.alpha_composite(Image.fromarray(scene.astype(np.uint8)).convert("RGBA"), bare_layer)
    under = np.asarray(under.convert("RGB")).astype(np.int16)
    for block in design.blocks:
        b = block.box
        glyphs = np.abs(ad - under)[b.y : b.bottom, b.x : b.right].sum(axis=2) > 60
        assert glyphs.sum() > 300, f"{block.role}: no text drawn"
        text_l = luminance(hex_rgb(block.color))
        bg_l = luminance(under[b.y : b.bottom, b.x : b.right][glyphs])
        ratio = (np.maximum(text_l, bg_l) + 0.05) / (np.minimum(text_l, bg_l) + 0.05)
        assert np.percentile(ratio, 1) >= 4.5, (block.role, float(np.percentile(ratio, 1)))
        # and the glyph cores really are the designed colour
        core = np.abs(ad[b.y : b.bottom, b.x : b.right][glyphs] - hex_rgb(block.color)).sum(axis=1) < 24
        assert core.mean() > 0.2, block.role


async def test_a_branch_from_composite_changes_only_the_text(env, coffee_job) -> None:
    source = await find_snapshot(env.graph, coffee_job.job_id, AD_NODES, node="composite")
    child_id = new_job_id()
    cfg = await seed_branch(
        env.graph,
        source,
        child_id,
        AD_NODES,
        {"copy": AdCopy(headline="Same scene, new copy", cta="Order")},
        INPUT_CONSUMERS,
        {"parent": {"job_id": coffee_job.job_id}},
    )
    child = await run_job(env.graph, env.ctx, child_id, None, config=cfg)
    assert child.status == "succeeded", child.error
    ran = [n["name"] for n in child.nodes]
    assert not {"segment", "background", "composite"} & set(ran) and ran[-1] == "render"
    assert child.values["scene"] == coffee_job.values["scene"]
    old_ad, new_ad = (
        np.asarray(env.ctx.artifacts.open_image_sync(r.values["ad"])).astype(np.int16)
        for r in (coffee_job, child)
    )
    changed = np.abs(old_ad - new_ad).sum(axis=2) > 0
    assert changed.any()
    text_zone = np.zeros_like(changed)
    for result in (coffee_job, child):
        text_zone |= np.asarray(env.ctx.artifacts.open_image_sync(result.values["text_layer"]))[..., 3] > 0
    assert not (changed & ~text_zone).any()  # every changed pixel is a text-layer pixel
