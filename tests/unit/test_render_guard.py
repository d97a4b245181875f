"""The render node's last guard: an ad whose rendered text would cover the product is refused, not made."""

from __future__ import annotations

import dataclasses

from graph.context import AdContext
from kernel.models import Box
from service.running import run_job
from tests.unit.ad_support import ad_input
from tests.unit.fakes import FakeRenderer


async def _product_box(graph, ctx: AdContext, photo) -> Box:
    """Where the composite put the product for this input (the same input places it the same way)."""
    first = await run_job(graph, ctx, "probe", ad_input(ctx, photo))
    assert first.status == "succeeded", first.error
    return first.values["placement"].product_box


async def test_text_laid_out_over_the_product_fails_the_render_naming_the_blocks(
    graph, ctx, product_photo
) -> None:
    p = await _product_box(graph, ctx, product_photo)
    assert p.x > 40 and p.y > 20  # the bottle stands in from the corner
    # what Chromium would report for a layout gone wrong: the headline runs into the product's top-left corner
    boxes = {"headline": Box(x=p.x - 40, y=p.y - 20, w=80, h=40), "cta": Box(x=0, y=0, w=p.x, h=p.y)}
    renderer = FakeRenderer(boxes=boxes)
    result = await run_job(
        graph, dataclasses.replace(ctx, renderer=renderer), "job-over", ad_input(ctx, product_photo)
    )
    assert result.status == "failed"
    assert result.error.code == "RENDER_FAILED"
    assert result.error.message == "the rendered headline would cover the product"
    assert result.error.details["product_box"] == p.model_dump()
    assert result.error.details["boxes"] == {r: b.model_dump() for r, b in boxes.items()}
    assert result.nodes[-1] == {**result.nodes[-1], "name": "render", "status": "failed"}
    assert "ad" not in result.values  # no ad was made
    assert renderer.calls == 1  # bad layout is not a passing failure: not retried


async def test_text_beside_the_product_passes(graph, ctx, product_photo) -> None:
    p = await _product_box(graph, ctx, product_photo)
    # touching the product's edges is not covering it
    boxes = {
        "headline": Box(x=p.x, y=p.y - 40, w=p.w, h=40),
        "subline": Box(x=p.right, y=p.y, w=30, h=p.h),
        "cta": Box(x=p.x, y=p.bottom, w=p.w, h=20),
    }
    renderer = FakeRenderer(boxes=boxes)
    result = await run_job(
        graph, dataclasses.replace(ctx, renderer=renderer), "job-beside", ad_input(ctx, product_photo)
    )
    assert result.status == "succeeded", result.error
    assert result.values["text_boxes"] == boxes
    assert result.values["ad"] is not None
