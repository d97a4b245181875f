from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from graph.context import AdContext, ad_context, canvas_size
from graph.state import AdState
from nodes.backends.palette import product_palette
from nodes.backends.studio import StudioBackdrop


async def background(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Generate the backdrop at canvas size from the prompt, in harmony with the product's colours."""
    ctx = ad_context(runtime.context)
    cutout = await ctx.artifacts.open_image(state["cutout"])
    palette = await asyncio.to_thread(product_palette, cutout)
    ask = {
        "size": canvas_size(state["size"]),
        "prompt": state["background_prompt"],
        "product_palette": palette,
        "seed": state["seed"],
    }
    init: dict[str, Any] = {}
    if (strength := state.get("restyle")) is not None:
        if getattr(ctx.backdrop, "restyles", False):
            # img2img from a first composition: the model sees the product where it will stand
            base = await StudioBackdrop().generate(**ask)
            first, _ = await ctx.compositor.compose(
                background=base, cutout=cutout, text_position=state["text_position"]
            )
            init = {"init_image": first, "strength": strength}
        else:
            reason = f"the {ctx.backdrop.name} backdrop cannot restyle a scene; made from the prompt"
            runtime.stream_writer(
                {"type": "fallback", "agent": ctx.backdrop.name, "part": "restyle", "reason": reason}
            )

    def progress(fraction: float, message: str) -> None:
        runtime.stream_writer({"type": "progress", "fraction": fraction, "message": message})

    def cancelled() -> bool:  # a shutdown drain lets the step finish; only a cancel stops it midway
        return runtime.control is not None and runtime.control.drain_reason == "cancel"

    image = await ctx.backdrop.generate(**ask, **init, progress=progress, cancelled=cancelled)
    # An intermediate only `composite` reads: JPEG q95 is invisible here and ~150 ms faster than PNG.
    background = await ctx.artifacts.put_image(image, lossy=True)
    return {"background": background, "background_backend": ctx.backdrop.name}
