from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import AdContext, ad_context
from graph.state import AdState


async def analyze(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Measure the scene for the text layer: free regions, colours, brightness, the product's box."""
    ctx = ad_context(runtime.context)
    scene = await ctx.artifacts.open_image(state["scene"])

    def fallback(part: str, reason: str) -> None:
        runtime.stream_writer(
            {"type": "fallback", "agent": ctx.analyzer.name, "part": part, "reason": reason}
        )

    analysis = await ctx.analyzer.analyze(scene=scene, placement=state["placement"], fallback=fallback)
    return {"analysis": analysis, "analyze_backend": ctx.analyzer.name}
