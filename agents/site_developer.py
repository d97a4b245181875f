"""The rule-based site developer: semantic, responsive HTML and one stylesheet from the plan and the design.

The markup is in `agents/templates/site/`, where every piece of user text is autoescaped; images are the
site's own files; the pages share one header (navigation to every page, the current one marked) and one
footer (name, address, phone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath as Path
from typing import Any

from agents.site_schemas import (
    CSS_PATH,
    DesignSystem,
    Profile,
    SiteCode,
    SiteImage,
    SitePage,
    SitePlan,
    SiteSection,
    font_paths,
)
from agents.templating import render

UI = {
    "ko": {
        "skip": "본문 바로가기",
        "nav": "주 메뉴",
        "photo": "{name} 사진 {n}",
        "rights": "All rights reserved.",
    },
    "en": {
        "skip": "Skip to content",
        "nav": "Main menu",
        "photo": "{name} photo {n}",
        "rights": "All rights reserved.",
    },
}


def assign_images(plan: SitePlan, images: list[SiteImage]) -> dict[tuple[str, str], list[SiteImage]]:
    """Images per (page, section): the gallery shows them all; every other page gets its own, in turn,
    so two pages share an image only when there are fewer images than places for them."""
    out: dict[tuple[str, str], list[SiteImage]] = {}
    if not images:
        return out
    cursor = 0
    for page in plan.pages:
        for section in page.sections:
            if section.kind == "gallery":
                out[(page.slug, section.id)] = list(images)
            elif section.images:
                picked = [images[(cursor + i) % len(images)] for i in range(min(section.images, len(images)))]
                cursor += len(picked)
                out[(page.slug, section.id)] = picked
    return out


def _tel(phone: str) -> str:
    return "tel:" + "".join(c for c in phone if c.isdigit() or c == "+")


class RuleSiteDeveloper:
    name = "rules"

    async def code(
        self, *, profile: Profile, plan: SitePlan, design: DesignSystem, images: list[SiteImage]
    ) -> SiteCode:
        return write_site(profile, plan, design, images)


def write_site(
    profile: Profile,
    plan: SitePlan,
    design: DesignSystem,
    images: list[SiteImage],
    descriptions: Mapping[str, str] | None = None,
) -> SiteCode:
    """Every page and the stylesheet; `descriptions` (by page slug) replace the pages' search snippets."""
    placed = assign_images(plan, images)
    descriptions = descriptions or {}
    pages = {
        page.filename: _page(page, profile, plan, design, placed, descriptions.get(page.slug, plan.tagline))
        for page in plan.pages
    }
    return SiteCode(pages=pages, css=stylesheet(design))


def _page(
    page: SitePage,
    profile: Profile,
    plan: SitePlan,
    design: DesignSystem,
    placed: dict[tuple[str, str], list[SiteImage]],
    description: str,
) -> str:
    ui = UI[plan.language]
    contact_href = _cta_href(plan, profile)
    if page.slug == "contact" and profile.phone_number:  # on the contact page a button calls
        contact_href = _tel(profile.phone_number)
    phone = _phone(profile)
    return render(
        "site/page.html.j2",
        language=plan.language,
        page=page,
        nav=plan.pages,
        store_name=profile.store_name,
        description=description,
        css_path=CSS_PATH,
        ui=ui,
        section_views=[
            _section(s, page, profile, design, placed.get((page.slug, s.id), []), contact_href, ui, phone)
            for s in page.sections
        ],
        location=profile.location,
        phone=phone,
    )


def _phone(profile: Profile) -> dict[str, str] | None:
    if not profile.phone_number:
        return None
    return {"number": profile.phone_number, "href": _tel(profile.phone_number)}


def _cta_href(plan: SitePlan, profile: Profile) -> str:
    if any(p.slug == "contact" for p in plan.pages):
        return "contact.html"
    if profile.phone_number:
        return _tel(profile.phone_number)
    return "index.html#contact"


def _section(
    s: SiteSection,
    page: SitePage,
    profile: Profile,
    design: DesignSystem,
    images: list[SiteImage],
    contact_href: str,
    ui: dict[str, str],
    phone: dict[str, str] | None,
) -> dict[str, Any]:
    """What `site/sections.html.j2` needs to write one section: plain text, the template escapes it."""
    alt = [
        ui["photo"].format(name=profile.store_name, n=i + 1) + f" — {s.heading}" for i in range(len(images))
    ]
    contact = []
    for item in s.items if s.kind == "contact" else []:
        if phone and phone["number"] in item:
            before, _, after = item.rpartition(phone["number"])
            contact.append({"phone": phone, "before": before, "after": after})
        else:
            contact.append({"phone": None, "text": item})
    return {
        "id": s.id,
        "kind": s.kind,
        "hero": design.hero,
        "tag": "h1" if s is page.sections[0] else "h2",
        "heading": s.heading,
        "paragraphs": [par for par in s.body.split("\n") if par.strip()],
        "entries": s.items,
        "cta": s.cta,
        "href": contact_href,
        "figures": [{"image": im, "alt": a} for im, a in zip(images, alt, strict=True)],
        "contact": contact,
    }


def _faces(design: DesignSystem) -> list[dict[str, Any]]:
    """The @font-face rules' values: for each family and weight, the embedded file if any, and its name."""
    faces = []
    embedded = font_paths(design)
    for family in dict.fromkeys([design.type.heading_family, design.type.body_family]):
        face = re.compile(
            rf"(?i)^{re.escape(family.replace(' ', ''))}(R|B|EB|L|Regular|Bold|ExtraBold|Light)?$"
        )
        files = {p: f for p, f in embedded.items() if face.match(Path(f).stem)}
        for weight in (400, 700):
            bold = [p for p in files if Path(p).stem.endswith(("B", "Bold"))]
            regular = [p for p in files if p not in bold]
            chosen = (bold if weight == 700 else regular) or list(files)
            faces.append({"family": family, "slug": _slug(family), "weight": weight, "files": chosen[:1]})
    return faces


def font_faces(design: DesignSystem) -> str:
    """@font-face rules: the embedded files (relative to the stylesheet), else the installed font by name."""
    return render("site/font_faces.css.j2", faces=_faces(design))


def _slug(family: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in family)


FALLBACK_STACK = '"Apple SD Gothic Neo","Malgun Gothic","Noto Sans KR",sans-serif'


def stylesheet(design: DesignSystem) -> str:
    t = design.type
    return render(
        "site/site.css.j2",
        design=design,
        p=design.palette,
        t=t,
        u=design.space_px,
        faces=_faces(design),
        heading={"family": t.heading_family, "slug": _slug(t.heading_family)},
        body={"family": t.body_family, "slug": _slug(t.body_family)},
        fallback=FALLBACK_STACK,
        radius={"pill": "999px", "rounded": f"{max(6, design.radius_px)}px", "square": "2px"}[design.button],
        hero_dir={"split": "row", "banner": "column-reverse", "centered": "column"}[design.hero],
        hero_align="center" if design.hero == "centered" else "start",
        hero_items="stretch" if design.hero == "banner" else "center",
    )
