"""The ad graph's mechanics with fakes and an in-memory checkpointer: order, checkpoints, branch, resume."""

from __future__ import annotations

import pytest

from checkpoints.history import describe, find_snapshot, seed_branch, thread_config
from graph.ad import INPUT_CONSUMERS
from graph.context import AdContext
from graph.state import AD_NODES
from kernel.errors import AdgraphError
from kernel.models import AdCopy
from service.running import run_job
from tests.unit.ad_support import ad_input
from tests.unit.fakes import FakeRenderer

# The fixtures `ctx` (the ad's context with fakes) and `graph` (in-memory checkpoints) are in conftest.py.
STEP2 = ["analyze", "plan", "design", "code", "render"]


async def test_a_job_runs_every_node_in_order_and_checkpoints_after_each(graph, ctx, product_photo) -> None:
    result = await run_job(graph, ctx, "job-1", ad_input(ctx, product_photo))
    assert result.status == "succeeded", result.error
    assert [n["name"] for n in result.nodes] == list(AD_NODES)
    assert [c["node"] for c in result.checkpoints] == ["__input__", "__start__", *AD_NODES]
    assert result.values["ad"].width == 1080 and result.values["ad"].height == 1080
    snaps = [s async for s in graph.aget_state_history(thread_config("job-1"))]
    assert [describe(s, AD_NODES).node for s in reversed(snaps)] == ["__input__", "__start__", *AD_NODES]


async def test_checkpoints_hold_references_not_pixels(graph, ctx, product_photo) -> None:
    await run_job(graph, ctx, "job-1", ad_input(ctx, product_photo))
    saver = graph.checkpointer
    tup = await saver.aget_tuple(thread_config("job-1"))
    kind, blob = saver.serde.dumps_typed(tup.checkpoint)
    # every image lives in the artifact store; the whole final state is a few KB
    assert len(blob) < 24_000, len(blob)


async def test_user_text_is_escaped_into_the_layer(graph, ctx, product_photo) -> None:
    result = await run_job(
        graph, ctx, "job-x", ad_input(ctx, product_photo, headline="<script>alert(1)</script>")
    )
    html = result.values["text_layer_html"]
    assert "&lt;script&gt;" in html and "<script" not in html


async def test_a_branch_from_composite_with_new_copy_runs_only_the_text_layer(
    graph, ctx, product_photo
) -> None:
    first = await run_job(graph, ctx, "src", ad_input(ctx, product_photo))
    segment_calls = ctx.segmenter.calls
    source = await find_snapshot(graph, "src", AD_NODES, node="composite")
    cfg = await seed_branch(
        graph,
        source,
        "child",
        AD_NODES,
        {"copy": AdCopy(headline="Half price today")},
        INPUT_CONSUMERS,
        {"parent": {"job_id": "src"}},
    )
    child = await run_job(graph, ctx, "child", None, config=cfg)
    assert child.status == "succeeded", child.error
    assert [n["name"] for n in child.nodes] == STEP2
    assert ctx.segmenter.calls == segment_calls
    assert child.values["scene"] == first.values["scene"]  # the same step-1 image, shared
    assert child.values["ad"] != first.values["ad"]
    assert child.values["copy"].headline == "Half price today"
    # the source job is untouched
    src_now = await graph.aget_state(thread_config("src"))
    assert (
        src_now.values["ad"] == first.values["ad"] and src_now.values["copy"].headline == "Fresh red bottle"
    )


async def test_a_branch_refuses_an_input_its_checkpoint_already_used(graph, ctx, product_photo) -> None:
    await run_job(graph, ctx, "src", ad_input(ctx, product_photo))
    source = await find_snapshot(graph, "src", AD_NODES, node="composite")
    with pytest.raises(AdgraphError) as err:
        await seed_branch(
            graph, source, "child", AD_NODES, {"background_prompt": "red wood"}, INPUT_CONSUMERS, {}
        )
    assert err.value.code == "INVALID_INPUT" and "'segment'" in err.value.message
    assert [s async for s in graph.aget_state_history(thread_config("child"))] == []  # nothing was written
    # from segment it is allowed, and the backdrop is made again
    source = await find_snapshot(graph, "src", AD_NODES, node="segment")
    cfg = await seed_branch(
        graph, source, "child", AD_NODES, {"background_prompt": "red wood"}, INPUT_CONSUMERS, {}
    )
    child = await run_job(graph, ctx, "child", None, config=cfg)
    assert [n["name"] for n in child.nodes] == list(AD_NODES[1:])


async def test_unknown_checkpoint_and_job_have_their_own_codes(graph, ctx, product_photo) -> None:
    await run_job(graph, ctx, "src", ad_input(ctx, product_photo))
    with pytest.raises(AdgraphError) as err:
        await find_snapshot(graph, "src", AD_NODES, checkpoint_id="nope")
    assert err.value.code == "CHECKPOINT_NOT_FOUND"
    with pytest.raises(AdgraphError) as err:
        await find_snapshot(graph, "missing", AD_NODES, node="composite")
    assert err.value.code == "JOB_NOT_FOUND"
    with pytest.raises(AdgraphError) as err:
        await find_snapshot(graph, "src", AD_NODES, node="paint")
    assert err.value.code == "INVALID_INPUT"


async def test_a_failed_node_keeps_its_checkpoints_and_resume_runs_only_what_is_left(
    graph, ctx, product_photo
) -> None:
    renderer = FakeRenderer(fail_times=1)
    failing = AdContext(**{**ctx.__dict__, "renderer": renderer})
    first = await run_job(graph, failing, "job-f", ad_input(ctx, product_photo))
    assert first.status == "failed" and first.error.code == "RENDER_FAILED"
    assert [n["name"] for n in first.nodes][-1] == "render" and first.nodes[-1]["status"] == "failed"
    assert "ad" not in first.values and "text_layer_html" in first.values
    resumed = await run_job(graph, failing, "job-f", None)
    assert resumed.status == "succeeded", resumed.error
    assert [n["name"] for n in resumed.nodes] == ["render"]
    assert renderer.calls == 2


async def test_copy_too_long_fails_at_design_and_a_branch_with_shorter_copy_recovers(
    graph, ctx, product_photo
) -> None:
    long = (
        "오늘만 특별한 가격 " * 9
    )  # 90 characters: within the request limit, too long for 1200x628 at 28 px
    result = await run_job(graph, ctx, "job-l", ad_input(ctx, product_photo, headline=long, size="1200x628"))
    assert result.status == "failed" and result.error.code == "INVALID_INPUT"
    assert "28 px" in result.error.message and result.error.details.get("limit_chars")
    source = await find_snapshot(graph, "job-l", AD_NODES, node="composite")
    cfg = await seed_branch(
        graph, source, "job-s", AD_NODES, {"copy": AdCopy(headline="Short")}, INPUT_CONSUMERS, {}
    )
    fixed = await run_job(graph, ctx, "job-s", None, config=cfg)
    assert fixed.status == "succeeded", fixed.error
