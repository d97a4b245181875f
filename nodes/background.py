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
    init = await _restyle_from(ctx, runtime, state, ask, cutout) if state.get("restyle") is not None else {}

    def progress(fraction: float, message: str) -> None:
        runtime.stream_writer({"type": "progress", "fraction": fraction, "message": message})

    def cancelled() -> bool:  # a shutdown drain lets the step finish; only a cancel stops it midway
        return runtime.control is not None and runtime.control.drain_reason == "cancel"

    image = await ctx.backdrop.generate(**ask, **init, progress=progress, cancelled=cancelled)
    # An intermediate only `composite` reads: JPEG q95 is invisible here and ~150 ms faster than PNG.
    background = await ctx.artifacts.put_image(image, lossy=True)
    return {"background": background, "background_backend": ctx.backdrop.name}


async def _restyle_from(ctx: AdContext, runtime: Runtime, state: AdState, ask: dict, cutout: Any) -> dict:
    """img2img from a first composition (the product on the studio backdrop where composite will put it),
    for a backend that restyles; otherwise say that the prompt alone was used."""
    if not getattr(ctx.backdrop, "restyles", False):
        reason = f"the {ctx.backdrop.name} backdrop cannot restyle a scene; made from the prompt"
        runtime.stream_writer(
            {"type": "fallback", "agent": ctx.backdrop.name, "part": "restyle", "reason": reason}
        )
        return {}
    base = await StudioBackdrop().generate(**ask)
    first, _ = await ctx.compositor.compose(
        background=base, cutout=cutout, text_position=state["text_position"]
    )
    return {"init_image": first, "strength": state["restyle"]}
