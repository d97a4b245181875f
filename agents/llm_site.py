"""The homepage's planner, designer and developer with an LLM, over the same protocols as the rule agents.

The LLM is asked for the parts it can do in a few tokens (which pages, a tagline and a short story, a style
and a brand colour, a page description per page); the rule agents build the rest around those answers,
and every answer is checked with the schemas' `…_problems()` rules before it is used. A bad answer gets
one repair round; then the rules decide that part and the fallback is reported.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, create_model

from kernel import color as C
from kernel.script import has_hangul

from .llm import Usage, ask, describe_errors
from .prompts_site import (
    FIRST_PAGE_REPAIR,
    PRIMARY_REPAIR,
    REPEATED_PAGES_REPAIR,
    SYSTEM,
    brand_colour_repair,
    copy_request,
    descriptions_request,
    design_request,
    missing_page_repair,
    pages_request,
    too_many_pages_repair,
)
from .site_checks import code_problems
from .site_designer import RuleSiteDesigner, readable
from .site_developer import RuleSiteDeveloper, write_site
from .site_planner import RuleSitePlanner
from .site_schemas import (
    EXTERNAL_URL,
    MAX_PAGES,
    PAGE_KINDS,
    STYLES,
    DesignSystem,
    Profile,
    SiteCode,
    SiteImage,
    SitePlan,
    design_problems,
    font_paths,
    plan_problems,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

_PHONE = re.compile(r"\+?\d[\d\-. ()]{6,}\d")


def copy_problems(text: str, field: str, profile: Profile, *, low: int, high: int) -> list[str]:
    """Short copy the site may show: the profile's language, a sensible length, no URL, no markup, no
    phone number the shop did not give."""
    out = []
    lang = profile.language
    if not low <= len(text.strip()) <= high:
        out.append(f"{field} has {len(text.strip())} characters; write {low} to {high}")
    if lang == "ko" and not has_hangul(text):
        out.append(f"{field} must be written in Korean")
    if lang == "en" and has_hangul(text):
        out.append(f"{field} must be written in English")
    if EXTERNAL_URL.search(text):
        out.append(f"{field} contains a URL; the site links nowhere else")
    if "<" in text or ">" in text:
        out.append(f"{field} contains markup; write plain text")
    digits = re.sub(r"\D", "", profile.phone_number or "")
    for m in _PHONE.finditer(text):
        found = re.sub(r"\D", "", m.group())
        if len(found) >= 9 and found != digits:  # a date (2019-08-31) or a price is not a phone number
            out.append(f"{field} has a phone number the shop did not give ({m.group()})")
    return out


class LLMSitePlanner:
    """`SitePlanner`: the LLM picks the pages (unless the user did) and writes the tagline and the shop's
    story; the rule planner builds every section, the contact lines and the navigation around them."""

    name = "llm"

    def __init__(self, chat: BaseChatModel, usage: Usage | None = None) -> None:
        self.chat, self.usage = chat, usage if usage is not None else Usage()
        self.rules = RuleSitePlanner()

    async def plan(self, *, profile: Profile, images: int, pages: list[str] | None) -> SitePlan:
        if pages is None:
            pages = await self._pages(profile)
        plan = await self.rules.plan(profile=profile, images=images, pages=pages)
        return await self._copy(profile, plan)

    async def _pages(self, profile: Profile) -> list[str] | None:
        schema = create_model(
            "SitePages",
            __doc__="The pages of the homepage, in menu order.",
            pages=(list[Literal[PAGE_KINDS]], Field(description="index first, gallery always, 3 to 5 pages")),
        )

        def check(choice: Any) -> list[str]:
            chosen: list[str] = choice.pages
            out = [missing_page_repair(p) for p in ("index", "gallery") if p not in chosen]
            if chosen and chosen[0] != "index":
                out.append(FIRST_PAGE_REPAIR)
            if len(set(chosen)) != len(chosen):
                out.append(REPEATED_PAGES_REPAIR)
            if len(chosen) > MAX_PAGES:
                out.append(too_many_pages_repair(len(chosen), MAX_PAGES))
            return out

        user = pages_request(profile, PAGE_KINDS)
        choice = await ask(
            self.chat, schema, system=SYSTEM, user=user, agent="planner", part="plan.pages",
            check=check, usage=self.usage,
        )  # fmt: skip
        return None if choice is None else list(choice.pages)

    async def _copy(self, profile: Profile, plan: SitePlan) -> SitePlan:
        has_about = any(p.slug == "about" for p in plan.pages)
        fields: dict[str, Any] = {
            "tagline": (str, Field(description="one welcoming sentence, under 100 characters"))
        }
        if has_about:
            fields["story"] = (str, Field(description="two or three sentences about the shop"))
        schema = create_model("SiteCopy", __doc__="Short copy for the homepage.", **fields)

        def apply(choice: Any) -> SitePlan:
            pages = []
            for page in plan.pages:
                sections = []
                for s in page.sections:
                    if page.slug == "index" and s.kind == "hero":
                        s = s.model_copy(update={"body": choice.tagline.strip()})
                    elif page.slug == "about" and s.id == "story" and has_about:
                        s = s.model_copy(update={"body": choice.story.strip()})
                    sections.append(s)
                pages.append(page.model_copy(update={"sections": sections}))
            updated = plan.model_copy(update={"tagline": choice.tagline.strip(), "pages": pages})
            return SitePlan.model_validate(updated.model_dump())  # model_copy skips the field checks

        def check(choice: Any) -> list[str]:
            out = copy_problems(choice.tagline, "tagline", profile, low=8, high=140)
            if has_about:
                out += copy_problems(choice.story, "story", profile, low=20, high=600)
            return out or _problems(lambda: plan_problems(apply(choice), profile))

        user = copy_request(profile, story=has_about, language=plan.language)
        choice = await ask(
            self.chat, schema, system=SYSTEM, user=user, agent="planner", part="plan.copy",
            check=check, usage=self.usage,
        )  # fmt: skip
        return plan if choice is None else apply(choice)


class LLMSiteDesigner:
    """`SiteDesigner`: the LLM picks the style (unless the user hinted one), the brand colour, the hero
    layout and the button shape; the rule designer sets fonts, type scale and spacing, and the palette
    must still read at 4.5:1 everywhere."""

    name = "llm"

    def __init__(self, chat: BaseChatModel, fonts: Any, usage: Usage | None = None) -> None:
        self.chat, self.usage, self.fonts = chat, usage if usage is not None else Usage(), fonts
        self.rules = RuleSiteDesigner(fonts)

    async def design(self, *, profile: Profile, plan: SitePlan, style: str | None) -> DesignSystem:
        styles = list(STYLES) if style is None else [None]
        bases = {s: await self.rules.design(profile=profile, plan=plan, style=s or style) for s in styles}
        fields: dict[str, Any] = {}
        if style is None:
            fields["style"] = (Literal[STYLES], Field(description="the look of the site"))
        fields["brand_color"] = (
            str,
            Field(
                pattern=COLOUR,
                description=f"main colour for buttons and links: one of {', '.join(HUES)}, or #rrggbb",
            ),
        )
        fields["hero"] = (
            Literal["split", "banner", "centered"],
            Field(description="layout of the top section"),
        )
        fields["button"] = (Literal["pill", "rounded", "square"], Field(description="button shape"))
        schema = create_model("SiteStyle", __doc__="The homepage's look.", **fields)
        installed = self.fonts.families()

        def apply(choice: Any) -> DesignSystem:
            base = bases[getattr(choice, "style", None)]
            primary = brand_colour(choice.brand_color, base)
            label = max(("#ffffff", "#111111"), key=lambda c: C.contrast(c, primary))
            palette = base.palette.model_copy(update={"primary": primary, "on_primary": label})
            updated = base.model_copy(
                update={"palette": palette, "hero": choice.hero, "button": choice.button}
            )
            return DesignSystem.model_validate(updated.model_dump())

        def check(choice: Any) -> list[str]:
            if not re.match(COLOUR, choice.brand_color.strip().lower()):
                return [brand_colour_repair(choice.brand_color, HUES)]
            return [
                p + PRIMARY_REPAIR if "primary" in p else p
                for p in _problems(lambda: design_problems(apply(choice), installed))
            ]

        user = design_request(profile, style)
        choice = await ask(
            self.chat, schema, system=SYSTEM, user=user, agent="designer", part="design",
            check=check, usage=self.usage,
        )  # fmt: skip
        if choice is None:  # the rule designer's own choice of style, as if no LLM had been asked
            return await self.rules.design(profile=profile, plan=plan, style=style)
        return apply(choice)


HUES: dict[str, float] = {
    "red": 0.99,
    "orange": 0.07,
    "brown": 0.08,
    "green": 0.36,
    "teal": 0.5,
    "blue": 0.6,
    "purple": 0.76,
    "pink": 0.92,
}
"""Colour names a small model can choose from; each becomes a shade that reads on the site's backgrounds."""
COLOUR = rf"^({'|'.join(HUES)}|#[0-9a-fA-F]{{6}})$"


def brand_colour(value: str, base: DesignSystem) -> str:
    """The brand colour the LLM named (a hue name or a #rrggbb), as the shade of its hue that reads at 4.5:1
    on the background, the surface and white: the model picks the colour, the code picks how dark.

    (SmolLM2 picks pastels — #f0d2e4 on #fcfaf7 is 1.3:1 — and cannot repair them when told.)"""
    value = value.strip().lower()
    if value in HUES:
        colour = C.from_hls(HUES[value], 0.3 if value == "brown" else 0.4, 0.35 if value == "brown" else 0.65)
    else:
        colour = value
    for under in (base.palette.background, base.palette.surface, "#ffffff"):
        colour = readable(colour, under)
    return colour


def _problems(run: Any) -> list[str]:
    """`run()`'s problems, or the schema's if building the value failed its field checks."""
    try:
        return list(run())
    except ValidationError as e:
        return describe_errors(e)


class LLMSiteDeveloper:
    """`SiteDeveloper`: the rule developer writes the pages; the LLM writes each page's description (the
    search-result snippet), and the finished code must pass every static site check."""

    name = "llm"

    def __init__(self, chat: BaseChatModel, usage: Usage | None = None) -> None:
        self.chat, self.usage = chat, usage if usage is not None else Usage()
        self.rules = RuleSiteDeveloper()

    async def code(
        self, *, profile: Profile, plan: SitePlan, design: DesignSystem, images: list[SiteImage]
    ) -> SiteCode:
        base = await self.rules.code(profile=profile, plan=plan, design=design, images=images)
        fields: dict[str, Any] = {
            p.slug: (str, Field(description=f"description of the {p.slug} page, one sentence"))
            for p in plan.pages
        }
        schema = create_model("PageDescriptions", __doc__="One short description per page.", **fields)
        extra = dict.fromkeys(font_paths(design), b"")

        def apply(choice: Any) -> SiteCode:
            descriptions = {p.slug: getattr(choice, p.slug).strip() for p in plan.pages}
            return write_site(profile, plan, design, images, descriptions)

        def check(choice: Any) -> list[str]:
            out: list[str] = []
            for page in plan.pages:
                out += copy_problems(getattr(choice, page.slug), page.slug, profile, low=10, high=160)
            if out:
                return out
            pages = [p.filename for p in plan.pages]
            return code_problems(
                apply(choice), profile=profile, design=design, images=images, pages=pages, extra=extra
            )

        user = descriptions_request(
            profile, [p.slug for p in plan.pages], language=plan.language, tagline=plan.tagline
        )
        choice = await ask(
            self.chat, schema, system=SYSTEM, user=user, agent="developer", part="code.descriptions",
            check=check, usage=self.usage,
        )  # fmt: skip
        return base if choice is None else apply(choice)
