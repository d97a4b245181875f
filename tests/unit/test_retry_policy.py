"""The retry policy both workflows set on their nodes, checked on the render nodes (a browser tab can crash
there): a failure that can pass on its own (TransientError) gets one more try; an error a user has to act
on is never retried."""

from __future__ import annotations

import dataclasses

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from checkpoints.saver import serializer
from graph.homepage import build_homepage_graph
from graph.retry import TRANSIENT
from graph.state import AD_NODES, HOMEPAGE_NODES
from kernel.errors import AdgraphError, TransientError
from service.running import run_job
from service.workflows import state_types
from tests.unit.ad_support import ad_input
from tests.unit.fakes import FakeRenderer
from tests.unit.site_support import FakeSiteRenderer, profile, site_context


def tab_crashed() -> Exception:
    return TransientError("the browser tab crashed")


async def test_a_transient_failure_is_retried_and_the_job_succeeds(graph, ctx, product_photo) -> None:
    renderer = FakeRenderer(fail_times=1, failure=tab_crashed)
    result = await run_job(
        graph, dataclasses.replace(ctx, renderer=renderer), "j", ad_input(ctx, product_photo)
    )
    assert result.status == "succeeded", result.error
    assert renderer.calls == 2  # the render node ran twice
    assert [(n["name"], n["status"]) for n in result.nodes] == [(n, "succeeded") for n in AD_NODES]
    assert result.values["ad"] is not None


async def test_a_failure_that_persists_fails_the_job_after_max_attempts(graph, ctx, product_photo) -> None:
    renderer = FakeRenderer(fail_times=100, failure=tab_crashed)
    result = await run_job(
        graph, dataclasses.replace(ctx, renderer=renderer), "j", ad_input(ctx, product_photo)
    )
    assert result.status == "failed"
    assert renderer.calls == TRANSIENT.max_attempts == 2
    assert "the browser tab crashed" in result.error.message
    assert result.nodes[-1]["name"] == "render" and result.nodes[-1]["status"] == "failed"
    assert "ad" not in result.values


async def test_an_adgraph_error_is_not_retried(graph, ctx, product_photo) -> None:
    renderer = FakeRenderer(fail_times=1)  # RENDER_FAILED: the same input would fail the same way
    result = await run_job(
        graph, dataclasses.replace(ctx, renderer=renderer), "j", ad_input(ctx, product_photo)
    )
    assert result.status == "failed" and result.error.code == "RENDER_FAILED"
    assert renderer.calls == 1


@pytest.mark.parametrize(
    ("failure", "fail_times", "status", "calls"),
    [
        (tab_crashed, 1, "succeeded", 2),
        (tab_crashed, 100, "failed", 2),
        (lambda: AdgraphError("RENDER_FAILED", "no"), 1, "failed", 1),
    ],
    ids=["transient-once", "transient-always", "adgraph-error"],
)
async def test_the_homepage_graph_retries_the_same_way(tmp_path, failure, fail_times, status, calls) -> None:
    renderer = FakeSiteRenderer(fail_times=fail_times, failure=failure)
    graph = build_homepage_graph(InMemorySaver(serde=serializer(state_types())))
    site = {"profile": profile(), "images": [], "pages": None, "style": None}
    result = await run_job(graph, site_context(tmp_path, renderer), "site", site, order=HOMEPAGE_NODES)
    assert result.status == status, result.error
    assert renderer.calls == calls
    assert [n["name"] for n in result.nodes] == list(HOMEPAGE_NODES)
    assert result.nodes[-1]["status"] == status
