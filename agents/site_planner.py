"""The rule-based site planner: pages, sections and copy from the profile, in the profile's language."""

from __future__ import annotations

import re

from agents.site_schemas import MAX_PAGES, PAGE_KINDS, Profile, SitePage, SitePlan, SiteSection
from kernel.script import has_final_consonant, is_syllable

FOOD = re.compile(
    r"(?i)cafe|café|coffee|bakery|restaurant|bistro|bar\b|카페|커피|베이커리|빵|식당|레스토랑|음식|맛집|주점|분식"
)
_SPLIT = re.compile(r"\s*(?:[,;·/\n]|\band\b|그리고)\s*")

T = {
    "ko": {
        "index": "홈",
        "about": "소개",
        "menu": "메뉴",
        "gallery": "갤러리",
        "contact": "오시는 길",
        "why": "{name}만의 강점",
        "for": "이런 분께 추천해요",
        "for_body": "{target}{eul} 위해 준비했습니다.",
        "welcome": "{where}{welcome_type}{name}에 오신 것을 환영합니다.",
        "about_h": "{name} 이야기",
        "about_body": "{name}{eun} {where}{type}입니다.",
        "about_plain": "{name}{eun} 찾아 주시는 분들을 위해 문을 열었습니다.",
        "proud": "{strength}{iga} 저희의 자랑입니다.",
        "promise": "우리의 약속",
        "promise_body": "찾아 주시는 한 분 한 분께 정성을 다하겠습니다.",
        "menu_h": "대표 메뉴와 서비스",
        "gallery_h": "{name} 둘러보기",
        "gallery_body": "매장과 상품의 모습을 사진으로 만나 보세요.",
        "no_photos": "사진은 곧 올라옵니다.",
        "contact_h": "연락처와 위치",
        "phone": "전화",
        "address": "주소",
        "visit": "방문해 주세요",
        "visit_body": "궁금한 점은 언제든 전화로 문의해 주세요.",
        "call": "전화 문의",
        "book": "예약 문의",
        "directions": "오시는 길",
        "store": "매장",
    },
    "en": {
        "index": "Home",
        "about": "About",
        "menu": "Menu",
        "gallery": "Gallery",
        "contact": "Contact",
        "why": "Why {name}",
        "for": "Made for you",
        "for_body": "We look after {target}.",
        "welcome": "Welcome to {name}, {type_a}{where_en}.",
        "about_h": "The story of {name}",
        "about_body": "{name} is {type_a}{where_en}.",
        "about_plain": "{name} opened its doors for you.",
        "proud": "We are proud of: {strength}.",
        "promise": "Our promise",
        "promise_body": "Every visitor gets our full attention, every time.",
        "menu_h": "What we offer",
        "gallery_h": "Inside {name}",
        "gallery_body": "A look at our place and what we make.",
        "no_photos": "Photos are coming soon.",
        "contact_h": "Find us",
        "phone": "Phone",
        "address": "Address",
        "visit": "Come and visit",
        "visit_body": "Questions? Give us a call any time.",
        "call": "Call us",
        "book": "Book a visit",
        "directions": "Directions",
        "store": "shop",
    },
}


def particle(word: str, with_final: str, without_final: str) -> str:
    """The Korean particle that follows `word` (은/는, 을/를, 이/가) by whether its last syllable has a
    final consonant; other scripts get the first form."""
    last = word.strip()[-1:] or " "
    if is_syllable(last):
        return with_final if has_final_consonant(last) else without_final
    return with_final


def strengths(profile: Profile) -> list[str]:
    parts = [p.strip(" .") for p in _SPLIT.split(profile.store_strength or "") if p.strip(" .")]
    return [p[:1].upper() + p[1:] for p in parts[:6]]


def choose_pages(profile: Profile, requested: list[str] | None) -> list[str]:
    if requested:
        chosen = {"index", "gallery", *requested}
    else:
        chosen = {"index", "about", "gallery", "contact"}
        if FOOD.search(profile.store_type or ""):
            chosen.add("menu")
    return [p for p in PAGE_KINDS if p in chosen][:MAX_PAGES]


class RuleSitePlanner:
    name = "rules"

    async def plan(self, *, profile: Profile, images: int, pages: list[str] | None) -> SitePlan:
        lang = profile.language
        t = T[lang]
        kind = profile.store_type or t["store"]
        # "카페 봄" says it is a 카페 already ("Blue Door Bakery, a bakery" reads fine in English)
        named = lang == "ko" and kind.casefold() in profile.store_name.casefold()
        f = {
            "name": profile.store_name,
            "type": kind,
            "welcome_type": "" if named or not profile.store_type else f"{kind} ",
            "type_a": f"a {kind}" if lang == "en" and profile.store_type else kind,
            "where": f"{profile.location}의 " if profile.location else "",
            "where_en": f" in {profile.location}" if profile.location else "",
            "target": profile.target_customer or "",
            "strength": profile.store_strength or "",
            "eun": particle(profile.store_name, "은", "는"),
            "eul": particle(profile.target_customer or "", "을", "를"),
        }
        goal = (profile.advertising_goal or "").lower()
        cta = t["book"] if re.search(r"예약|book|reserv", goal) else t["call"] if profile.phone_number else ""
        slugs = choose_pages(profile, pages)
        cta = cta or (t["directions"] if "contact" in slugs else "")
        tagline = t["welcome"].format(**f).replace("  ", " ")
        plan_pages = [self._page(slug, profile, t, f, tagline, cta, images) for slug in slugs]
        return SitePlan(language=lang, tagline=tagline[:160], pages=plan_pages)

    def _page(
        self,
        slug: str,
        profile: Profile,
        t: dict[str, str],
        f: dict[str, str],
        tagline: str,
        cta: str,
        images: int,
    ) -> SitePage:
        name = profile.store_name
        items = strengths(profile)
        contact_items = [
            *([f"{t['phone']}: {profile.phone_number}"] if profile.phone_number else []),
            *([f"{t['address']}: {profile.location}"] if profile.location else []),
        ]
        contact = SiteSection(
            id="contact", kind="contact", heading=t["contact_h"], body=t["visit_body"], items=contact_items
        )
        sections: list[SiteSection]
        if slug == "index":
            sections = [
                SiteSection(id="hero", kind="hero", heading=name, body=tagline[:1200], images=1, cta=cta)
            ]
            if items:
                sections.append(
                    SiteSection(id="strengths", kind="features", heading=t["why"].format(**f), items=items)
                )
            if profile.target_customer:
                sections.append(
                    SiteSection(
                        id="for-you", kind="text", heading=t["for"], body=t["for_body"].format(**f), images=1
                    )
                )
            sections.append(contact)
        elif slug == "about":
            known = profile.store_type or profile.location
            body = (t["about_body"] if known else t["about_plain"]).format(**f)
            if items:
                listed = ", ".join(items)
                body += " " + t["proud"].format(strength=listed, iga=particle(listed, "이", "가"))
            sections = [
                SiteSection(
                    id="story", kind="text", heading=t["about_h"].format(**f), body=body[:1200], images=1
                ),
                SiteSection(
                    id="promise", kind="text", heading=t["promise"], body=t["promise_body"], images=1
                ),
            ]
        elif slug == "menu":
            sections = [
                SiteSection(
                    id="offer", kind="features", heading=t["menu_h"], items=items or [f["type"]], images=2
                )
            ]
        elif slug == "gallery":
            body = t["gallery_body"] if images else t["no_photos"]
            sections = [
                SiteSection(
                    id="photos", kind="gallery", heading=t["gallery_h"].format(**f), body=body, images=images
                )
            ]
        else:  # contact
            sections = [contact.model_copy(update={"id": "find-us"})]
            if cta:
                sections.append(
                    SiteSection(id="visit", kind="cta", heading=t["visit"], body=t["visit_body"], cta=cta)
                )
        return SitePage(
            slug=slug, title=t[slug] if slug != "index" else name, nav_label=t[slug], sections=sections
        )
