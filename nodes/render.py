from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from PIL import Image

from graph.context import AdContext, ad_context, canvas_size
from graph.state import AdState
from kernel.errors import AdgraphError


async def render(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Render the text layer in Chromium and lay it over the scene: the finished ad."""
    ctx = ad_context(runtime.context)
    layer, boxes = await ctx.renderer.render_layer(state["text_layer_html"], canvas_size(state["size"]))
    product = state["placement"].product_box
    if covering := [role for role, box in boxes.items() if box.intersection(product) > 0]:
        raise AdgraphError(
            "RENDER_FAILED",
            f"the rendered {', '.join(covering)} would cover the product",
            boxes={r: b.model_dump() for r, b in boxes.items()},
            product_box=product.model_dump(),
        )
    scene = await ctx.artifacts.open_image(state["scene"])
    ad = await asyncio.to_thread(lambda: Image.alpha_composite(scene.convert("RGBA"), layer).convert("RGB"))
    text_layer, ad_ref = await asyncio.gather(ctx.artifacts.put_image(layer), ctx.artifacts.put_image(ad))
    return {"text_layer": text_layer, "ad": ad_ref, "text_boxes": boxes}
