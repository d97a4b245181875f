"""The product's colours, read from its cut-out."""

from __future__ import annotations

import numpy as np
from PIL import Image

from kernel.color import rgb_to_hex


def product_palette(cutout: Image.Image, n: int = 5) -> list[str]:
    """Up to `n` colours of the product (where the matte is solid), most frequent first, as #rrggbb."""
    small = cutout.convert("RGBA")
    small.thumbnail((96, 96))
    px = np.asarray(small)
    solid = px[px[..., 3] > 200][:, :3]
    if len(solid) == 0:
        return []
    strip = Image.fromarray(solid.reshape(1, -1, 3))
    quant = strip.quantize(colors=n, method=Image.Quantize.MEDIANCUT)
    counts = sorted(quant.getcolors() or [], reverse=True)
    pal = quant.getpalette() or []
    return [rgb_to_hex(pal[i * 3 : i * 3 + 3]) for _, i in counts]
