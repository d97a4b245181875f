"""Fakes for the two tools that need a model or a browser, behind the same protocols as the real ones."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageDraw

from kernel.errors import AdgraphError
from kernel.models import Box


class FakeSegmenter:
    """Everything that differs from the photo's border colour is product."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    async def segment(self, photo: Image.Image) -> Image.Image:
        self.calls += 1
        px = np.asarray(photo.convert("RGB"), np.int16)
        border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
        bg = np.median(border, axis=0)
        mask = np.abs(px - bg).sum(axis=2) > 40
        return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L")


class FakeRenderer:
    """Draws a solid bar per `data-role` block at a position derived from the HTML; fails on demand."""

    def __init__(self, fail_times: int = 0) -> None:
        self.calls = 0
        self.fail_times = fail_times

    async def render_layer(self, html: str, size: tuple[int, int]) -> tuple[Image.Image, dict[str, Box]]:
        self.calls += 1
        if self.fail_times > 0:
            self.fail_times -= 1
            raise AdgraphError("RENDER_FAILED", "injected failure")
        layer = Image.new("RGBA", size, (0, 0, 0, 0))
        shade = hashlib.sha256(html.encode()).digest()[0]  # different HTML, visibly different layer
        ImageDraw.Draw(layer).rectangle((10, 10, 60, 30), fill=(shade, 0, 0, 255))
        return layer, {}
