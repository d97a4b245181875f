"""Helpers for the ad unit tests (and the integration tests that check the same agents for real): the
agents' inputs, an independent WCAG 2.x implementation, job inputs."""

from __future__ import annotations

import re
from typing import Any

from PIL import Image

from agents.rules import RuleDesigner, RuleDeveloper, RulePlanner
from agents.schemas import Scrim, TextDesign, TextPlan
from graph.context import AdContext
from kernel.models import AdCopy, Box, Region, SceneAnalysis
from tests.unit.fakes import FakeFonts


def ad_input(
    ctx: AdContext, photo: Image.Image, headline: str = "Fresh red bottle", **kw: Any
) -> dict[str, Any]:
    """An ad job's graph input for `photo` (stored in the context's artifact store); `kw` overrides."""
    ref = ctx.artifacts.put_image_sync(photo)
    base = {
        "product_image": ref,
        "copy": AdCopy(headline=headline, subline="New in store", cta="Buy"),
        "background_prompt": "blue marble",
        "size": "1080x1080",
        "seed": 3,
        "text_position": "auto",
        "font": None,
    }
    return {**base, **kw}


CANVAS = (1080, 1080)
TEXT_AREA = Box(x=49, y=49, w=982, h=410)
PRODUCT = Box(x=300, y=500, w=480, h=520)


# -- an independent WCAG 2.x implementation, so the tests don't grade the agents with their own helper ----


def lin(c: float) -> float:
    c /= 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def rgb(hex_colour: str) -> tuple[int, int, int]:
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", hex_colour), hex_colour
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def lum_rgb(rgb: tuple[float, float, float]) -> float:
    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def lum(hex_colour: str) -> float:
    return lum_rgb(rgb(hex_colour))


def ratio(a: float, b: float) -> float:
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def grey(luminance: float) -> float:
    """sRGB value of the grey with that luminance (search, to stay independent of the agents' inverse)."""
    lo, hi = 0.0, 255.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if lum_rgb((mid, mid, mid)) < luminance else (lo, mid)
    return lo


def worst(colour: str, band: tuple[float, float]) -> float:
    lc = lum(colour)
    if band[0] <= lc <= band[1]:
        return 1.0
    return min(ratio(lc, band[0]), ratio(lc, band[1]))


def under_scrim(scrim: Scrim, luminance: float) -> float:
    g = grey(luminance)
    return lum_rgb(tuple(scrim.opacity * c + (1 - scrim.opacity) * g for c in rgb(scrim.color)))


def scene(
    band: tuple[float, float], *, regions: list[Region] | None = None, product: Box = PRODUCT
) -> SceneAnalysis:
    if regions is None:
        regions = [
            Region(
                name="text_area",
                box=TEXT_AREA,
                emptiness=0.9,
                luminance=sum(band) / 2,
                luminance_range=band,
                color="#808080",
            )
        ]
    return SceneAnalysis(
        product_box=product,
        regions=regions,
        dominant="#8a5a2b",
        accent="#2b6cd0",
        palette=["#8a5a2b", "#2b6cd0"],
        brightness=[[sum(band) / 2] * 4 for _ in range(4)],
    )


COPY = AdCopy(
    headline="여름 한정 세일 최대 50% 할인",
    subline="매일 아침 로스팅한 신선한 원두를 문 앞까지 배송해 드립니다",
    cta="지금 구매하기",
)
BRIGHT, DARK, MID = (0.78, 0.95), (0.01, 0.08), (0.12, 0.62)


async def plan_for(
    copy: AdCopy, analysis: SceneAnalysis, *, position: str = "top", canvas=CANVAS
) -> TextPlan:
    return await RulePlanner().plan(
        copy=copy, analysis=analysis, canvas=canvas, text_position=position, text_area=TEXT_AREA
    )


async def design_for(
    copy: AdCopy = COPY, band=BRIGHT, *, fonts=None, font: str | None = None, analysis=None, position="top"
) -> tuple[TextPlan, TextDesign, SceneAnalysis]:
    analysis = analysis or scene(band)
    plan = await plan_for(copy, analysis, position=position)
    design = await RuleDesigner(fonts or FakeFonts()).design(
        plan=plan, analysis=analysis, canvas=CANVAS, font=font
    )
    return plan, design, analysis


async def code_for(design: TextDesign, plan: TextPlan) -> str:
    return (await RuleDeveloper().code(plan=plan, design=design, canvas=CANVAS)).html
