"""The GPU `segment` backend: BiRefNet (dichotomous image segmentation) through the model runtime."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from PIL import Image

from gpu_runtime.loaders import device_of, dtype_of

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet, as BiRefNet was trained
STD = np.array([0.229, 0.224, 0.225], np.float32)


class BiRefNetSegmenter:
    """`Segmenter`: the photo at `resolution`² through BiRefNet, the finest mask resized back."""

    name = "birefnet"

    def __init__(self, runtime: Any, *, model: str = "birefnet", resolution: int = 1024) -> None:
        self.runtime, self.model, self.resolution = runtime, model, resolution
        self.version = f"{self.name}/{model}/{resolution}"
        """A cache key's part: the weights are the model directory configured under that name."""

    async def segment(self, photo: Image.Image) -> Image.Image:
        """Return the product matte: mode "L", same size as `photo`, 255 = product. Resizing and
        normalising run on a worker thread, off the event loop and off the device's thread (where the
        GPU would wait for them)."""
        x = await asyncio.to_thread(prepare, photo, self.resolution)
        async with self.runtime.use(self.model) as net:
            prob = await self.runtime.run(predict, net, x)
        return await asyncio.to_thread(matte_of, prob, photo)


def prepare(photo: Image.Image, resolution: int) -> np.ndarray:
    """The photo as BiRefNet takes it: float32 (1, 3, resolution, resolution), ImageNet-normalised."""
    x = np.asarray(photo.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR))
    x = (x.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def predict(net: Any, x: np.ndarray) -> np.ndarray:
    """Foreground probability, float32 (resolution, resolution) in 0..1. Runs on the runtime's thread."""
    import torch

    with torch.inference_mode():
        tensor = torch.from_numpy(x).to(device_of(net), dtype_of(net))
        logits = net(tensor)[-1]  # BiRefNet returns its predictions coarse to fine
        return logits.sigmoid()[0, 0].float().cpu().numpy()


def matte_of(prob: np.ndarray, photo: Image.Image) -> Image.Image:
    matte = Image.fromarray(np.rint(prob * 255).astype(np.uint8), "L")
    matte = matte.resize(photo.size, Image.Resampling.BILINEAR)
    if photo.mode in ("RGBA", "LA"):  # a photo's own transparency is never product
        matte = Image.fromarray(np.minimum(np.asarray(matte), np.asarray(photo.getchannel("A"))), "L")
    return matte
