from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from graph.context import AdContext, ad_context
from graph.state import AdState


async def composite(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Stand the product on the backdrop: scaled, never cropped, its own pixels, room left for text."""
    ctx = ad_context(runtime.context)
    background, cutout = await asyncio.gather(
        ctx.artifacts.open_image(state["background"]), ctx.artifacts.open_image(state["cutout"])
    )
    scene, placement = await ctx.compositor.compose(
        background=background, cutout=cutout, text_position=state["text_position"]
    )
    return {"scene": await ctx.artifacts.put_image(scene), "placement": placement}
