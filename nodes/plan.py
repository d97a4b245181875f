from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import AdContext, ad_context, canvas_size
from graph.state import AdState


async def plan(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Decide which text blocks go where (never over the product)."""
    ctx = ad_context(runtime.context)
    text_plan = await ctx.planner.plan(
        copy=state["copy"],
        analysis=state["analysis"],
        canvas=canvas_size(state["size"]),
        text_position=state["text_position"],
        text_area=state["placement"].text_area,
    )
    return {"text_plan": text_plan}
