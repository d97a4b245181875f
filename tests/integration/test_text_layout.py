"""The designer's PIL-measured layout against what Chromium really lays out."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.models import AdCopy
from nodes.backends.chromium import CHROMIUM_ARGS
from tests.unit.ad_support import BRIGHT, CANVAS, COPY, DARK, MID, code_for, design_for

CHROMIUM = "/usr/bin/chromium"


def _gradient(size: tuple[int, int]):
    import numpy as np
    from PIL import Image

    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    a, b = np.array([250, 236, 210]), np.array([70, 90, 120])
    rgb = a * (1 - (0.6 * y + 0.4 * x)) + b * (0.6 * y + 0.4 * x)
    return Image.fromarray(rgb.astype("uint8"), "RGB")


@pytest.mark.integration
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
async def test_chromium_lays_the_text_out_where_the_design_measured_it(tmp_path: Path) -> None:
    import io

    from PIL import Image
    from playwright.async_api import async_playwright

    from nodes.backends.fonts import FontconfigCatalog

    fonts = FontconfigCatalog()
    cases = [
        (COPY, MID),
        (
            AdCopy(
                headline="Fresh coffee, roasted every single morning",
                subline="Delivered to your door",
                cta="Shop now",
            ),
            DARK,
        ),
        (
            AdCopy(headline="가을신상니트컬렉션오늘단하루전품목무료배송이벤트", subline="Autumn knit 컬렉션"),
            BRIGHT,
        ),
    ]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                java_script_enabled=False, viewport={"width": CANVAS[0], "height": CANVAS[1]}
            )
            page = await context.new_page()
            for i, (copy, band) in enumerate(cases):
                plan, design, analysis = await design_for(copy, band, fonts=fonts)
                await page.set_content(await code_for(design, plan))
                for b in design.blocks:
                    box = await page.locator(f'[data-role="{b.role}"]').bounding_box()
                    assert box is not None
                    got = (box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"])
                    want = (b.box.x, b.box.y, b.box.right, b.box.bottom)
                    assert all(abs(g - w) <= 3 for g, w in zip(got, want, strict=True)), (b.role, got, want)
                    assert box["x"] >= plan.box.x - 1 and box["x"] + box["width"] <= plan.box.right + 1
                png = await page.screenshot(omit_background=True)
                layer = Image.open(io.BytesIO(png)).convert("RGBA")
                assert layer.size == CANVAS
                alpha = layer.getchannel("A")
                assert alpha.getpixel((5, CANVAS[1] - 5)) == 0  # transparent away from the text
                head = design.blocks[0].box
                assert (
                    alpha.crop((head.x, head.y, head.right, head.bottom)).getextrema()[1] == 255
                )  # text drawn
                ad = _gradient(CANVAS).convert("RGBA")
                ad.alpha_composite(layer)
                ad.convert("RGB").save(tmp_path / f"ad_{i}.png")
            await context.close()
        finally:
            await browser.close()
