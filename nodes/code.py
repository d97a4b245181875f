from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import AdContext, ad_context, canvas_size
from graph.state import AdState


async def code(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Write the transparent text layer as a self-contained HTML document."""
    ctx = ad_context(runtime.context)
    layer = await ctx.developer.code(
        plan=state["text_plan"], design=state["design"], canvas=canvas_size(state["size"])
    )
    return {"text_layer_html": layer.html}
