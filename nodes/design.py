from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import AdContext, ad_context, canvas_size
from graph.state import AdState


async def design(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Choose font, sizes that fit and colours that reach 4.5:1 against what lies under the text."""
    ctx = ad_context(runtime.context)
    text_design = await ctx.designer.design(
        plan=state["text_plan"],
        analysis=state["analysis"],
        canvas=canvas_size(state["size"]),
        font=state["font"],
    )
    return {"design": text_design}
