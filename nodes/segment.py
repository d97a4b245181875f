from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from PIL import ImageOps

from checkpoints.step_cache import step_key
from graph.context import AdContext, ad_context
from graph.state import AdState
from nodes.backends.matte import make_cutout

CUTOUT_VERSION = 1
"""Bump when the cut-out made from a matte changes (make_cutout, the EXIF handling): old cache entries
then miss."""


async def segment(state: AdState, runtime: Runtime[AdContext]) -> dict[str, Any]:
    """Cut the product out of the photo: an RGBA cut-out, same size, alpha = the product matte. The same
    photo through the same backend is cut out once per tenant: later jobs reuse it (`cached` in the job's
    nodes)."""
    ctx = ad_context(runtime.context)
    segmenter = ctx.segmenter
    key = None
    if ctx.cache is not None:
        version = getattr(segmenter, "version", segmenter.name)
        key = step_key(ctx.scope, "segment", CUTOUT_VERSION, version, state["product_image"].id)
        if (hit := await ctx.cache.get(key)) is not None:
            runtime.stream_writer({"type": "cached", "step": "segment"})
            return {"cutout": hit, "segment_backend": segmenter.name}
    photo = await ctx.artifacts.open_image(state["product_image"])
    # Phone photos carry their rotation in EXIF; the user expects what their gallery shows.
    photo = ImageOps.exif_transpose(photo).convert("RGB")
    matte = await segmenter.segment(photo)
    cutout = await asyncio.to_thread(make_cutout, photo, matte)
    ref = await ctx.artifacts.put_image(cutout)
    if key is not None:
        await ctx.cache.put(key, ref)  # type: ignore[union-attr]
    return {"cutout": ref, "segment_backend": segmenter.name}
