"""The rule-based homepage agents and the input rules: Korean and English profiles, styles, images."""

from __future__ import annotations

import asyncio
import re
from html import unescape

import pytest

from agents.site_checks import code_problems
from agents.site_developer import font_faces, write_site
from agents.site_rules import RuleSiteDesigner, RuleSiteDeveloper, RuleSitePlanner
from agents.site_schemas import (
    MIN_CONTRAST,
    Profile,
    SiteImage,
    design_problems,
    font_paths,
    plan_problems,
)
from kernel.color import contrast
from kernel.errors import AdgraphError
from kernel.script import has_hangul
from service.jobs import parse
from service.workflows.homepage import HomepageJobInput
from tests.unit.fakes import FakeKoreanFonts
from tests.unit.site_support import EN, KO, profile

FONTS = FakeKoreanFonts()
IMAGES = [SiteImage(src=f"images/photo-{i}.jpg", width=800, height=600) for i in range(1, 7)]


async def build(p: Profile, *, images=IMAGES, pages=None, style=None):
    plan = await RuleSitePlanner().plan(profile=p, images=len(images), pages=pages)
    design = await RuleSiteDesigner(FONTS).design(profile=p, plan=plan, style=style)
    code = await RuleSiteDeveloper().code(profile=p, plan=plan, design=design, images=images)
    return plan, design, code


def problems(p, plan, design, code, images=IMAGES):
    return code_problems(
        code,
        profile=p,
        design=design,
        images=images,
        pages=[pg.filename for pg in plan.pages],
        extra=dict.fromkeys(font_paths(design), b""),
    )


@pytest.mark.parametrize("data", [KO, EN], ids=["korean", "english"])
async def test_rule_agents_make_a_valid_site_in_the_profiles_language(data):
    p = profile(data)
    plan, design, code = await build(p)
    assert plan_problems(plan, p) == []
    assert design_problems(design, FONTS.families()) == []
    assert problems(p, plan, design, code) == []
    slugs = [pg.slug for pg in plan.pages]
    assert slugs[0] == "index" and "gallery" in slugs and len(slugs) <= 5
    copy = " ".join(s.heading + s.body for pg in plan.pages for s in pg.sections)
    assert has_hangul(copy) == (data is KO)
    assert f'lang="{p.language}"' in code.pages["index.html"]
    # the owner's ad budget and media plan are not for customers' eyes
    assert not any(data.get(k, "~") in html for html in code.pages.values() for k in ("budget", "period"))


async def test_requested_pages_and_the_two_that_are_always_there():
    plan, _, code = await build(profile(EN), pages=["contact"])
    assert [p.slug for p in plan.pages] == ["index", "gallery", "contact"]
    assert sorted(code.pages) == ["contact.html", "gallery.html", "index.html"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"profile": {**KO, "favourite_colour": "blue"}}, "favourite_colour"),
        ({"profile": {**KO, "store_name": "  "}}, "store_name"),
        ({"profile": {k: v for k, v in KO.items() if k != "store_name"}}, "store_name"),
        ({"pages": ["about", "blog"]}, "pages"),
        ({"images": ["x" * 64]}, "images"),
        ({"profile": {**KO, "phone_number": "call me maybe"}}, "phone_number"),
    ],
)
def test_bad_input_is_invalid_input_naming_the_field(change, field):
    with pytest.raises(AdgraphError) as e:
        parse(HomepageJobInput, {"profile": KO, **change})
    assert e.value.code == "INVALID_INPUT"
    assert any(field in f for f in e.value.details["fields"]), e.value.details


def test_more_than_five_pages_is_refused_and_missing_optional_fields_are_fine():
    with pytest.raises(AdgraphError, match="at most 5") as e:
        parse(
            HomepageJobInput,
            {"profile": KO, "pages": ["index", "about", "menu", "gallery", "contact", "about"]},
        )
    assert e.value.code == "INVALID_INPUT"
    five = parse(HomepageJobInput, {"profile": KO, "pages": ["about", "menu", "contact", "gallery", "index"]})
    assert five.pages == ["about", "menu", "contact", "gallery", "index"]
    opts = parse(HomepageJobInput, {"profile": {"store_name": "Kim's"}})
    assert opts.profile.language == "en" and opts.pages is None and opts.images == []


@pytest.mark.parametrize("hint", ["warm", "modern", "classic", "playful", "minimal"])
async def test_every_style_reads_at_4_5_to_1_with_installed_fonts(hint):
    p = profile(KO)
    plan = await RuleSitePlanner().plan(profile=p, images=2, pages=None)
    design = await RuleSiteDesigner(FONTS).design(profile=p, plan=plan, style=hint)
    assert design.style == hint
    assert design_problems(design, FONTS.families()) == []
    for fg, bg in design.palette.text_pairs().values():
        assert contrast(fg, bg) >= MIN_CONTRAST
    assert design.type.heading_family in FONTS.families(hangul_only=True)


async def test_korean_style_hints_and_the_stores_type_choose_the_style():
    p = profile(KO)
    plan = await RuleSitePlanner().plan(profile=p, images=0, pages=None)
    designer = RuleSiteDesigner(FONTS)
    assert (await designer.design(profile=p, plan=plan, style=None)).style == "warm"  # a café
    assert (await designer.design(profile=p, plan=plan, style="고급스럽고 우아하게")).style == "classic"
    assert (await designer.design(profile=p, plan=plan, style="깔끔한 느낌")).style == "minimal"


async def test_pages_get_different_images_when_there_are_enough():
    p = profile(KO)
    plan, _, code = await build(p)
    used: dict[str, set[str]] = {}
    for name, html in code.pages.items():
        used[name] = set(re.findall(r'<img src="([^"]+)"', html))
    assert used["gallery.html"] == {im.src for im in IMAGES}  # the gallery shows them all
    others = [srcs for name, srcs in used.items() if name != "gallery.html" and srcs]
    assert len(others) >= 2
    for i, a in enumerate(others):
        for b in others[i + 1 :]:
            assert not a & b, used


async def test_no_images_still_makes_a_valid_site():
    p = profile(EN)
    plan, design, code = await build(p, images=[])
    assert problems(p, plan, design, code, images=[]) == []
    assert "<img" not in "".join(code.pages.values())


async def test_all_text_is_escaped():
    p = profile(EN, store_name='<script>alert("x")</script> & Co', store_strength='<b>bold</b>, "quotes"')
    plan, design, code = await build(p)
    for html in code.pages.values():
        assert "<script" not in html and "<b>" not in html
        assert "&lt;script&gt;" in html
    assert problems(p, plan, design, code) == []


async def test_a_hostile_store_name_shows_as_written_and_the_stylesheet_is_not_html_escaped():
    name = '</div><script>alert(1)</script> "Tom" & Jerry\'s'
    p = profile(EN, store_name=name)
    plan, design, _ = await build(p)
    code = write_site(p, plan, design, IMAGES, descriptions={"index": f"{name} <b>&amp;</b>"})
    index = code.pages["index.html"]
    assert "<script" not in index and "<b>" not in index
    shown = [
        re.search(r"<title>(.*?)</title>", index).group(1),
        re.search(r'<a class="brand" href="index.html">(.*?)</a>', index).group(1),
        re.search(r'<p class="footer-name">(.*?)</p>', index).group(1),
    ]
    assert [unescape(s) for s in shown] == [name] * 3
    description = re.search(r'<meta name="description" content="([^"]*)">', index).group(1)
    assert unescape(description) == f"{name} <b>&amp;</b>"
    assert problems(p, plan, design, code) == []
    assert 'font-family:"site-' in code.css and "&#34;" not in code.css and "&quot;" not in code.css


async def test_every_page_has_the_same_navigation_to_every_page():
    plan, _, code = await build(profile(KO))
    for name, html in code.pages.items():
        nav = re.search(r"<nav.*?</nav>", html, re.S).group(0)
        assert re.findall(r'href="([^"]+)"', nav) == [p.filename for p in plan.pages]
        assert f'href="{name}" aria-current="page"' in nav


async def test_the_customers_shape_the_design_older_readers_get_larger_text():
    designer, planner = RuleSiteDesigner(FONTS), RuleSitePlanner()
    plain = profile(EN, store_type=None, store_strength=None, target_customer="office workers")
    seniors = plain.model_copy(update={"target_customer": "동네 어르신과 시니어 고객"})
    kids = plain.model_copy(update={"target_customer": "families with young kids"})
    designs = {}
    for name, p in (("plain", plain), ("seniors", seniors), ("kids", kids)):
        plan = await planner.plan(profile=p, images=0, pages=None)
        designs[name] = await designer.design(profile=p, plan=plan, style=None)
    assert designs["seniors"].type.base_px >= designs["plain"].type.base_px + 3
    assert designs["seniors"].type.line_height > designs["plain"].type.line_height
    assert (designs["plain"].style, designs["kids"].style) == ("modern", "playful")


def test_each_embedded_family_gets_its_own_files_and_weights():
    nanum = "/usr/share/fonts/truetype/nanum/"
    design = _design_with(
        "NanumSquare",
        "NanumSquareRound",
        [
            nanum + f
            for f in (
                "NanumSquareB.ttf",
                "NanumSquareR.ttf",
                "NanumSquareRoundB.ttf",
                "NanumSquareRoundR.ttf",
            )
        ],
    )
    faces = re.findall(
        r'font-family:"site-([a-z-]+)";font-weight:(\d+);[^}]*?url\("\.\./fonts/([^"]+)"', font_faces(design)
    )
    assert faces == [
        ("nanumsquare", "400", "NanumSquareR.ttf"),
        ("nanumsquare", "700", "NanumSquareB.ttf"),
        ("nanumsquareround", "400", "NanumSquareRoundR.ttf"),
        ("nanumsquareround", "700", "NanumSquareRoundB.ttf"),
    ]
    local_only = font_faces(_design_with("NanumMyeongjo", "NanumSquare", []))
    assert "url(" not in local_only and 'local("NanumMyeongjo")' in local_only


def _design_with(heading: str, body: str, files: list[str]):
    p = profile(KO)
    plan = asyncio.run(RuleSitePlanner().plan(profile=p, images=0, pages=None))
    design = asyncio.run(RuleSiteDesigner(FONTS).design(profile=p, plan=plan, style=None))
    scale = design.type.model_copy(update={"heading_family": heading, "body_family": body})
    return design.model_copy(update={"type": scale, "font_files": files})
