"""What a user sees in a finished ad, made by the real embedded models, Chromium and SQLite."""

from __future__ import annotations

import numpy as np
import pytest
import pytest_asyncio

from checkpoints.history import find_snapshot, seed_branch
from graph.ad import INPUT_CONSUMERS
from graph.state import AD_NODES
from kernel.models import SIZES, AdCopy
from service.running import new_job_id, run_job
from tests.integration.ad_checks import assert_product_whole_and_text_off_it, assert_text_reads_at_4_5_to_1

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


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
    assert_product_whole_and_text_off_it(
        *images(env, result, "cutout", "scene", "text_layer", "ad"), result.values
    )


async def test_every_text_block_reads_at_4_5_to_1_against_what_is_under_it(env, coffee_job) -> None:
    scene, ad = images(env, coffee_job, "scene", "ad")
    await assert_text_reads_at_4_5_to_1(env.ctx.renderer, coffee_job.values, scene, ad)


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
