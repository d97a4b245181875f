"""What the nodes hand a backend and record about it: backend names in state, img2img from a first
composition when asked (or a reported fallback), progress and cancel hooks, analysis fallbacks as events."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from graph.context import AdContext
from nodes.backends.stats import StatsAnalyzer
from nodes.backends.studio import StudioBackdrop
from service.running import run_job
from service.workflows.ad import backends_of
from tests.unit.ad_support import ad_input  # the fixtures `ctx` and `graph`: conftest.py


class RestylingBackdrop:
    """Records what it is asked; draws the init image back (or the studio backdrop without one)."""

    name = "restyler"
    restyles = True

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def generate(self, **kw: Any) -> Any:
        self.calls.append(kw)
        kw["progress"](0.5, "diffusion step 1/2")
        if kw.get("init_image") is not None:
            return kw["init_image"]
        return await StudioBackdrop().generate(size=kw["size"], prompt="", product_palette=[], seed=0)


class GrumpyAnalyzer:
    """The stats measurement, with one part reported as measured instead of answered."""

    name = "grumpy"

    async def analyze(self, *, scene: Any, placement: Any, fallback: Any = None) -> Any:
        fallback("palette", "the answer named no colours")
        return await StatsAnalyzer().analyze(scene=scene, placement=placement)


async def test_backend_names_are_in_state_and_in_the_result(graph, ctx, product_photo):  # noqa: F811
    result = await run_job(graph, ctx, "j-names", ad_input(ctx, product_photo))
    assert result.status == "succeeded", result.error
    assert backends_of(result.values) == {"segment": "fake", "background": "studio", "analyze": "stats"}
    assert backends_of(result.values, "cutout") == {"segment": "fake"}
    assert result.events == []  # the embedded backends never fall back


async def test_restyle_gives_the_backend_a_first_composition(graph, ctx: AdContext, product_photo):  # noqa: F811
    backdrop = RestylingBackdrop()
    ctx = dataclasses.replace(ctx, backdrop=backdrop, analyzer=GrumpyAnalyzer())
    seen: list[tuple[str, dict[str, Any]]] = []
    result = await run_job(
        graph,
        ctx,
        "j-restyle",
        ad_input(ctx, product_photo, restyle=0.4),
        listener=lambda k, d: seen.append((k, d)),
    )
    assert result.status == "succeeded", result.error
    (call,) = backdrop.calls
    assert call["strength"] == 0.4 and call["init_image"].size == (1080, 1080)
    # the init image already shows the product where composite will put it: red bottle pixels
    red = np.asarray(call["init_image"])[..., 0].astype(int) - np.asarray(call["init_image"])[..., 1]
    assert (red > 120).mean() > 0.01
    assert call["cancelled"]() is False  # no cancel asked
    assert (
        "progress",
        {"type": "progress", "node": "background", "fraction": 0.5, "message": "diffusion step 1/2"},
    ) in seen
    assert result.values["background_backend"] == "restyler"
    assert result.events == [
        {
            "type": "fallback",
            "node": "analyze",
            "agent": "grumpy",
            "part": "palette",
            "reason": "the answer named no colours",
        }
    ]


async def test_restyle_with_a_backend_that_cannot_is_reported(graph, ctx, product_photo):  # noqa: F811
    result = await run_job(graph, ctx, "j-nostyle", ad_input(ctx, product_photo, restyle=0.6))
    assert result.status == "succeeded", result.error
    assert [(e["node"], e["part"]) for e in result.events] == [("background", "restyle")]
    assert "studio backdrop cannot restyle" in result.events[0]["reason"]
