"""What the homepage agents take and return, and the rules every answer (rule-based or LLM) must pass.

Each output type has a `…_problems()` function listing rule violations in words a repair prompt can use;
an empty list means the value may go on to the next node.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from kernel.color import HEX_RE, contrast
from kernel.models import ArtifactRef, Frozen
from kernel.script import has_hangul

MAX_PAGES = 5
MIN_CONTRAST = 4.5
PAGE_KINDS: tuple[str, ...] = ("index", "about", "menu", "gallery", "contact")
"""The pages a site can have; `index` and `gallery` are always there. The file is `<kind>.html`."""
STYLES: tuple[str, ...] = ("warm", "modern", "classic", "playful", "minimal")
"""Style hints the designer understands; any other text is read for these words (Korean too)."""
_SLUG = r"^[a-z][a-z0-9-]{0,31}$"
# A URL in copy: a scheme with "//", a protocol-relative "//host", or "www." (tel:/mailto: are fine).
EXTERNAL_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://|(?<![\w./])//[\w-]|\bwww\.")


class Profile(Frozen):
    """The business profile shop owners filled in for the old system (Korean or English)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    store_name: str = Field(min_length=1, max_length=80)
    store_type: str | None = Field(None, max_length=200)
    budget: str | None = Field(None, max_length=200)
    period: str | None = Field(None, max_length=200)
    advertising_goal: str | None = Field(None, max_length=500)
    target_customer: str | None = Field(None, max_length=500)
    advertising_media: str | None = Field(None, max_length=200)
    store_strength: str | None = Field(None, max_length=1000)
    location: str | None = Field(None, max_length=300)
    phone_number: str | None = Field(None, max_length=40, pattern=r"^[0-9+() .\-]{3,40}$")

    @field_validator("*", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        if isinstance(v, (int, float)) and not isinstance(v, bool):  # "budget": 300000 is fine
            v = str(v)
        if isinstance(v, str) and "\x00" in v:
            raise ValueError("text must not contain NUL (U+0000)")
        return v or None if isinstance(v, str) else v

    @field_validator(
        "store_name",
        "store_type",
        "budget",
        "period",
        "advertising_goal",
        "target_customer",
        "advertising_media",
        "store_strength",
        "location",
    )
    @classmethod
    def _no_url(cls, v: str | None) -> str | None:
        # The site's copy comes from these fields, and a site links to nothing outside itself (the
        # no_external_urls check): refuse a web address here, not as a failed job three nodes later.
        if v is not None and EXTERNAL_URL.search(v):
            raise ValueError("must not contain a web address (http://…, //…, www.…): the site links nowhere")
        return v

    @property
    def language(self) -> Literal["ko", "en"]:
        """Korean if any field has Hangul, else English."""
        return "ko" if any(has_hangul(v) for v in self.model_dump().values() if isinstance(v, str)) else "en"


# -- plan --------------------------------------------------------------------------------------------


class SiteSection(Frozen):
    """One block of a page, with its copy (in the profile's language)."""

    id: str = Field(pattern=_SLUG)
    """Unique within the page; also the HTML id, so the navigation can link to it."""
    kind: Literal["hero", "text", "features", "gallery", "contact", "cta"]
    heading: str = Field(min_length=1, max_length=120)
    body: str = Field("", max_length=1200)
    items: list[str] = Field(default_factory=list, max_length=12)
    """Feature bullets, contact lines, …"""
    images: int = Field(0, ge=0, le=12)
    """How many images this section would like (the developer uses as many as there are)."""
    cta: str = Field("", max_length=60)
    """Button text; the button links to the contact page (or `tel:`)."""


class SitePage(Frozen):
    slug: str = Field(pattern=_SLUG)
    """One of PAGE_KINDS; the file is `<slug>.html`."""
    title: str = Field(min_length=1, max_length=120)
    nav_label: str = Field(min_length=1, max_length=30)
    sections: list[SiteSection] = Field(min_length=1, max_length=8)

    @property
    def filename(self) -> str:
        return f"{self.slug}.html"


class SitePlan(Frozen):
    language: Literal["ko", "en"]
    tagline: str = Field(max_length=160)
    pages: list[SitePage] = Field(min_length=1)
    """In navigation order; the first is `index`."""

    def page(self, slug: str) -> SitePage:
        return next(p for p in self.pages if p.slug == slug)


def plan_problems(plan: SitePlan, profile: Profile) -> list[str]:
    """Rule violations of a site plan: pages, sections, language, copy."""
    out: list[str] = []
    slugs = [p.slug for p in plan.pages]
    if len(slugs) > MAX_PAGES:
        out.append(f"{len(slugs)} pages; at most {MAX_PAGES}")
    for required in ("index", "gallery"):
        if required not in slugs:
            out.append(f"missing the {required!r} page")
    if slugs and slugs[0] != "index":
        out.append("the first page must be 'index'")
    if len(set(slugs)) != len(slugs):
        out.append("page slugs repeat")
    out += [f"unknown page {s!r}; use {', '.join(PAGE_KINDS)}" for s in slugs if s not in PAGE_KINDS]
    if plan.language != profile.language:
        out.append(f"language is {plan.language!r} but the profile is {profile.language!r}")
    for page in plan.pages:
        ids = [s.id for s in page.sections]
        if len(set(ids)) != len(ids):
            out.append(f"page {page.slug!r}: section ids repeat")
        for s in page.sections:
            for text in (s.heading, s.body, s.cta, *s.items):
                if EXTERNAL_URL.search(text):
                    out.append(f"page {page.slug!r} section {s.id!r}: copy contains a URL")
                    break
    index = next((p for p in plan.pages if p.slug == "index"), None)
    if index is not None and index.sections[0].kind != "hero":
        out.append("the index page must open with a 'hero' section")
    return out


# -- design ------------------------------------------------------------------------------------------


class Palette(Frozen):
    """Colours as #rrggbb. Every text colour is checked against what it is drawn on."""

    background: str
    surface: str
    """Cards, header and footer."""
    text: str
    muted: str
    """Secondary text (on background and surface)."""
    primary: str
    """Buttons and links' accent; links drawn in it must read on background and surface."""
    on_primary: str
    """Text on primary buttons."""
    accent: str
    """Decoration only (rules, borders); never text."""

    @field_validator("*")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not HEX_RE.match(v):
            raise ValueError(f"{v!r} is not a #rrggbb colour")
        return v.lower()

    def text_pairs(self) -> dict[str, tuple[str, str]]:
        """Every (foreground, background) pair the site draws text with."""
        return {
            "text on background": (self.text, self.background),
            "text on surface": (self.text, self.surface),
            "muted on background": (self.muted, self.background),
            "muted on surface": (self.muted, self.surface),
            "primary on background": (self.primary, self.background),
            "primary on surface": (self.primary, self.surface),
            "on_primary on primary": (self.on_primary, self.primary),
        }


class TypeScale(Frozen):
    heading_family: str
    body_family: str
    heading_weight: int = Field(ge=100, le=900)
    body_weight: int = Field(ge=100, le=900)
    base_px: int = Field(ge=14, le=22)
    ratio: float = Field(ge=1.1, le=1.6)
    """Each heading level is `ratio` times the next smaller one."""
    line_height: float = Field(ge=1.3, le=2.0)

    def size(self, step: int) -> int:
        """Font size in px `step` levels above the body text (0 = body)."""
        return round(self.base_px * self.ratio**step)


class DesignSystem(Frozen):
    style: Literal["warm", "modern", "classic", "playful", "minimal"]
    palette: Palette
    type: TypeScale
    space_px: int = Field(ge=4, le=16)
    """The spacing unit; paddings and gaps are multiples of it."""
    radius_px: int = Field(ge=0, le=32)
    max_width_px: int = Field(ge=720, le=1440)
    hero: Literal["split", "banner", "centered"]
    """How the index hero lays out its image and copy."""
    button: Literal["pill", "rounded", "square"]
    font_files: list[str] = Field(default_factory=list)
    """Font files (absolute paths of installed faces) the site embeds; empty means local() only."""


def design_problems(
    design: DesignSystem, installed_families: list[str], *, installed_files: set[str] | None = None
) -> list[str]:
    """Rule violations of a design system: contrast below 4.5:1, fonts that are not installed, and (given
    `installed_files`) a file to embed that is not an installed font's — the site would carry it."""
    out: list[str] = []
    for name, (fg, bg) in design.palette.text_pairs().items():
        c = contrast(fg, bg)
        if c < MIN_CONTRAST:
            out.append(f"{name}: contrast {c:.2f} < {MIN_CONTRAST} ({fg} on {bg})")
    for role, family in (("heading", design.type.heading_family), ("body", design.type.body_family)):
        if family not in installed_families:
            out.append(f"{role} font {family!r} is not installed")
    if installed_files is not None:
        out += [
            f"font file {f!r} is not an installed font" for f in design.font_files if f not in installed_files
        ]
    return out


# -- code --------------------------------------------------------------------------------------------


class SiteImage(Frozen):
    """An image the developer may use, already at its place in the site."""

    src: str = Field(pattern=r"^images/[a-z0-9-]+\.(png|jpg|webp)$")
    width: int
    height: int


class SiteCode(Frozen):
    """The developer's output: each page's complete HTML document and one stylesheet."""

    pages: dict[str, str]
    """File name (`index.html`, …) → HTML."""
    css: str
    """Served as `assets/site.css`; every page links it."""


CSS_PATH = "assets/site.css"


# -- the built site, as state holds it -------------------------------------------------------------------


class SiteManifest(Frozen):
    """The site's files in the artifact store (state never holds the HTML itself)."""

    files: dict[str, ArtifactRef]
    """Path inside the site (`index.html`, `assets/site.css`, `images/…`) → stored file."""
    pages: list[str]
    """Page file names in navigation order."""


class SiteChecks(Frozen):
    """Each check on the built site and what it found (an empty list passed)."""

    results: dict[str, list[str]]

    @property
    def passed(self) -> bool:
        return not any(self.results.values())


def font_paths(design: DesignSystem) -> dict[str, str]:
    """Where each embedded font file goes in the site: `fonts/<file name>` → the installed file."""
    return {f"fonts/{f.rsplit('/', 1)[-1]}": f for f in design.font_files}
