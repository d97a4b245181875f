from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from PIL import ImageOps

from graph.context import AdContext, ad_context
from graph.state import AdState
from nodes.backends.matte import make_cutout


async def segment(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Cut the product out of the photo: an RGBA cut-out, same size, alpha = the product matte."""
    ctx = ad_context(runtime.context)
    photo = await ctx.artifacts.open_image(state["product_image"])
    # Phone photos carry their rotation in EXIF; the user expects what their gallery shows.
    photo = ImageOps.exif_transpose(photo).convert("RGB")
    matte = await ctx.segmenter.segment(photo)
    cutout = await asyncio.to_thread(make_cutout, photo, matte)
    return {"cutout": await ctx.artifacts.put_image(cutout), "segment_backend": ctx.segmenter.name}
