"""Photos sized for a website: what a user uploads (a 12 MP phone photo, ~5 MB) is more than a page needs."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from PIL import Image

from kernel.models import ArtifactRef

WEB_MAX_SIDE = 1600
"""Photos larger than this (either side) are scaled down for the site: a phone photo of 12 MP is ~5 MB."""


async def for_the_web(artifacts: Any, ref: ArtifactRef) -> ArtifactRef:
    """`ref`, or a copy no larger than WEB_MAX_SIDE (JPEG at quality 85, PNG where there is transparency)."""
    if max(ref.width or 0, ref.height or 0) <= WEB_MAX_SIDE:
        return ref
    image = await artifacts.open_image(ref)

    def shrink() -> tuple[bytes, str, int, int]:
        im = image.copy()
        im.thumbnail((WEB_MAX_SIDE, WEB_MAX_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if im.mode in ("RGBA", "LA", "P") and im.convert("RGBA").getchannel("A").getextrema()[0] < 255:
            im.save(buf, format="PNG", compress_level=6)
            return buf.getvalue(), "image/png", im.width, im.height
        im.convert("RGB").save(buf, format="JPEG", quality=85, progressive=True)
        return buf.getvalue(), "image/jpeg", im.width, im.height

    data, mime, w, h = await asyncio.to_thread(shrink)
    return await artifacts.put_bytes(data, mime, w, h)
