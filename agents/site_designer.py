"""The rule-based site designer: a style from the hint or the store, then palette, fonts and spacing.

Every text colour is pushed darker (or lighter) until it reads at 4.5:1 on what it is drawn on.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from agents.site_schemas import MIN_CONTRAST, DesignSystem, Palette, Profile, SitePlan, TypeScale
from kernel.color import contrast, from_hls, hls, with_lightness

Style = Literal["warm", "modern", "classic", "playful", "minimal"]
STYLE_WORDS: dict[str, re.Pattern[str]] = {
    "warm": re.compile(r"(?i)warm|cozy|따뜻|포근|아늑"),
    "modern": re.compile(r"(?i)modern|sleek|bold|모던|세련|트렌디"),
    "classic": re.compile(r"(?i)classic|elegant|luxur|premium|클래식|고급|우아|전통"),
    "playful": re.compile(r"(?i)playful|fun|cute|bright|귀여|발랄|밝은|재미"),
    "minimal": re.compile(r"(?i)minimal|simple|clean|calm|미니멀|심플|깔끔|차분"),
}
STORE_STYLE: tuple[tuple[re.Pattern[str], Style], ...] = (
    (re.compile(r"(?i)cafe|café|coffee|bakery|카페|커피|베이커리|빵|디저트"), "warm"),
    (re.compile(r"(?i)restaurant|bistro|wine|식당|레스토랑|한식|와인|한정식"), "classic"),
    (re.compile(r"(?i)kid|pet|toy|flower|키즈|반려|애견|장난감|꽃"), "playful"),
    (re.compile(r"(?i)salon|beauty|nail|spa|clinic|미용|뷰티|네일|피부|병원|클리닉"), "minimal"),
)
# (hue 0..1, saturation) of the primary colour, and the page background per style.
STYLE_BASE: dict[Style, dict] = {
    "warm": {
        "hue": 0.07,
        "sat": 0.55,
        "bg": "#fbf6ef",
        "surface": "#f3e8da",
        "hero": "split",
        "button": "rounded",
    },
    "modern": {
        "hue": 0.62,
        "sat": 0.65,
        "bg": "#ffffff",
        "surface": "#eef1f6",
        "hero": "banner",
        "button": "square",
    },
    "classic": {
        "hue": 0.98,
        "sat": 0.45,
        "bg": "#fcfaf7",
        "surface": "#efe9e1",
        "hero": "centered",
        "button": "square",
    },
    "playful": {
        "hue": 0.9,
        "sat": 0.7,
        "bg": "#fffaf2",
        "surface": "#fdebf3",
        "hero": "split",
        "button": "pill",
    },
    "minimal": {
        "hue": 0.45,
        "sat": 0.3,
        "bg": "#ffffff",
        "surface": "#f4f5f4",
        "hero": "centered",
        "button": "rounded",
    },
}
STYLE_FONTS: dict[Style, tuple[list[str], list[str]]] = {
    # (heading preferences, body preferences); the first installed one wins
    "warm": (
        ["NanumSquareRound", "NanumSquare", "NanumGothic"],
        ["NanumSquareRound", "NanumSquare", "NanumGothic"],
    ),
    "modern": (
        ["NanumSquare", "NanumBarunGothic", "NanumGothic"],
        ["NanumSquare", "NanumBarunGothic", "NanumGothic"],
    ),
    "classic": (["NanumMyeongjo", "NanumSquare", "NanumGothic"], ["NanumSquare", "NanumGothic"]),
    "playful": (["NanumSquareRound", "NanumGothic"], ["NanumSquareRound", "NanumGothic"]),
    "minimal": (
        ["NanumBarunGothic", "NanumSquare", "NanumGothic"],
        ["NanumSquare", "NanumBarunGothic", "NanumGothic"],
    ),
}
SCALE: dict[Style, tuple[int, float, int, int, int]] = {
    # base px, ratio, space unit, radius, max width
    "warm": (17, 1.25, 8, 14, 1120),
    "modern": (16, 1.333, 8, 4, 1200),
    "classic": (17, 1.3, 9, 2, 1080),
    "playful": (17, 1.2, 8, 20, 1120),
    "minimal": (16, 1.25, 10, 8, 1040),
}
MAX_EMBED_BYTES = 3 * 2**20
"""Fonts are embedded in the site (so it looks the same anywhere, offline) when their files add up to at most
this; larger families (4–5 MB per face) are named with local() and a fallback stack instead."""


def read_style(hint: str | None, profile: Profile) -> Style:
    for style, words in STYLE_WORDS.items():
        if hint and words.search(hint):
            return style  # type: ignore[return-value]
    for pattern, style in STORE_STYLE:
        if pattern.search(" ".join(filter(None, [profile.store_type, profile.store_strength]))):
            return style
    if KIDS.search(profile.target_customer or ""):
        return "playful"
    return "modern"


KIDS = re.compile(r"(?i)\bkids?\b|children|famil|아이|어린이|키즈|가족|엄마|아빠")
SENIORS = re.compile(r"(?i)senior|elder|older|retire|어르신|시니어|노인|중장년|5060|60대|70대")


def for_readers(base_px: int, profile: Profile) -> tuple[int, float]:
    """Body size and line height for the store's customers: larger, airier text for older readers."""
    if SENIORS.search(profile.target_customer or ""):
        return min(22, base_px + 3), 1.8
    return base_px, 0.0


def readable(color: str, background: str, *, minimum: float = MIN_CONTRAST + 0.2) -> str:
    """`color` made darker (on light backgrounds) or lighter until it reaches `minimum` on `background`."""
    _, light, _ = hls(color)
    dark_bg = hls(background)[1] < 0.5
    step = 0.02 if dark_bg else -0.02
    while contrast(color, background) < minimum and 0.0 < light < 1.0:
        light = min(1.0, max(0.0, light + step))
        color = with_lightness(color, light)
    return color


class RuleSiteDesigner:
    name = "rules"

    def __init__(self, fonts) -> None:
        self.fonts = fonts
        """A `SiteFonts` (FontconfigCatalog): which families are installed, and their files."""

    async def design(self, *, profile: Profile, plan: SitePlan, style: str | None) -> DesignSystem:
        s = read_style(style, profile)
        base = STYLE_BASE[s]
        primary = from_hls(base["hue"], 0.38, base["sat"])
        bg, surface = base["bg"], base["surface"]
        text = readable(from_hls(base["hue"], 0.12, 0.15), bg, minimum=10.0)
        palette = Palette(
            background=bg,
            surface=surface,
            text=readable(text, surface, minimum=10.0),
            muted=readable(readable(from_hls(base["hue"], 0.4, 0.08), bg), surface),
            primary=readable(readable(primary, bg), surface),
            on_primary="#ffffff",
            accent=from_hls((base["hue"] + 0.08) % 1.0, 0.6, base["sat"]),
        )
        palette = palette.model_copy(update={"primary": readable(palette.primary, "#ffffff")})
        heading, body = (self._family(prefs) for prefs in STYLE_FONTS[s])
        base_px, ratio, space, radius, width = SCALE[s]
        base_px, airy = for_readers(base_px, profile)
        return DesignSystem(
            style=s,
            palette=palette,
            type=TypeScale(
                heading_family=heading,
                body_family=body,
                heading_weight=700,
                body_weight=400,
                base_px=base_px,
                ratio=ratio,
                line_height=airy or (1.7 if plan.language == "ko" else 1.6),
            ),
            space_px=space,
            radius_px=radius,
            max_width_px=width,
            hero=base["hero"],
            button=base["button"],
            font_files=self._embeddable(heading, body),
        )

    def _family(self, preferences: list[str]) -> str:
        installed = self.fonts.families(hangul_only=True) or self.fonts.families()
        return next((f for f in preferences if f in installed), installed[0])

    def _embeddable(self, *families: str) -> list[str]:
        files = sorted(
            {
                face.file
                for face in self.fonts.faces()
                if face.family in families
                and face.weight in (400, 700)
                and face.style.lower() in ("regular", "bold")
            }
        )
        total = sum(os.path.getsize(f) for f in files if os.path.exists(f))
        return files if files and total <= MAX_EMBED_BYTES else []
