from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tests.support import PHOTOS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANGGRAPH_CLI_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.coffee())


@pytest.fixture(scope="session")
def banana() -> Image.Image:
    with Image.open(PHOTOS / "banana.png") as im:
        return im.convert("RGB")


@pytest.fixture(scope="session")
def fish_plate() -> Image.Image:
    with Image.open(PHOTOS / "dried_fish_plate.png") as im:
        return im.convert("RGB")


@pytest.fixture
def product_photo() -> Image.Image:
    """A synthetic product shot: a red rounded bottle on a light grey sweep."""
    w, h = 600, 500
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (225, 225, 228)
    body = ((xx - 300) / 110) ** 2 + ((yy - 290) / 170) ** 2 <= 1
    neck = (abs(xx - 300) < 35) & (yy > 70) & (yy < 160)
    img[body | neck] = (200, 30, 40)
    img[body & (abs(xx - 260) < 12)] = (240, 120, 120)  # a highlight stripe
    return Image.fromarray(img)
