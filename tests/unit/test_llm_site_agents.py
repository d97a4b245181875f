"""The homepage's LLM agents with scripted answers: good answers are used, every bad one ends in a valid
site built by the rules, with the fallback recorded (Korean and English profiles)."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agents.llm import Usage
from agents.llm_site import LLMSiteDesigner, LLMSiteDeveloper, LLMSitePlanner
from agents.site_checks import code_problems
from agents.site_rules import RuleSiteDesigner, RuleSiteDeveloper, RuleSitePlanner
from agents.site_schemas import SiteImage, design_problems, plan_problems
from graph.homepage import build_homepage_graph
from graph.state import HOMEPAGE_NODES
from service.running import run_job
from tests.unit.fake_llm import bad_json, call, script, text
from tests.unit.fakes import FakeKoreanFonts
from tests.unit.site_support import EN, KO, profile, site_context, tiny_png

IMAGES = [SiteImage(src="images/photo-1.png", width=800, height=600)]
COPY = {
    "ko": {
        "tagline": "성수동 골목의 작은 로스터리 카페 봄입니다.",
        "story": "매일 아침 원두를 직접 볶습니다. 수제 디저트도 함께 즐겨 보세요.",
    },
    "en": {
        "tagline": "Sourdough and croissants, fresh at 5am.",
        "story": "We bake every morning on High Street. Come in.",
    },
}


def parts(usage: Usage) -> list[tuple[str, str]]:
    return [(f["agent"], f["part"]) for f in usage.fallbacks]


# -- planner ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [KO, EN], ids=["ko", "en"])
async def test_planner_uses_the_llms_pages_and_copy(data: dict[str, Any]) -> None:
    prof, usage = profile(data), Usage()
    lang = prof.language
    chat = script(
        call("SitePages", pages=["index", "about", "gallery"]),
        call("SiteCopy", **COPY[lang]),
    )
    plan = await LLMSitePlanner(chat, usage).plan(profile=prof, images=1, pages=None)
    assert [p.slug for p in plan.pages] == ["index", "about", "gallery"]
    assert plan.tagline == COPY[lang]["tagline"]
    assert plan.page("index").sections[0].body == COPY[lang]["tagline"]
    assert plan.page("about").sections[0].body == COPY[lang]["story"]
    assert plan_problems(plan, prof) == [] and usage.fallbacks == []


async def test_requested_pages_are_not_asked_for() -> None:
    chat = script(call("SiteCopy", tagline=COPY["en"]["tagline"]))
    plan = await LLMSitePlanner(chat, Usage()).plan(profile=profile(EN), images=0, pages=["contact"])
    assert [p.slug for p in plan.pages] == ["index", "gallery", "contact"]
    assert len(chat.seen) == 1 and "SitePages" not in str(chat.tools)


@pytest.mark.parametrize(
    ("answers", "words"),
    [
        ([call("SitePages", pages=["index", "about"])] * 2, "missing the 'gallery' page"),
        ([call("SitePages", pages=["about", "index", "gallery"])] * 2, "first page must be 'index'"),
        ([call("SitePages", pages=["index", "shop", "gallery"])] * 2, "pages.1"),
        ([bad_json("SitePages", '{"pages": ["index", "gal')] * 2, "invalid after one repair"),
    ],
    ids=["missing-page", "index-not-first", "unknown-page", "malformed"],
)
async def test_bad_pages_fall_back_to_the_rules_pages(answers: list[Any], words: str) -> None:
    prof, usage = profile(KO), Usage()
    chat = script(*answers, call("SiteCopy", **COPY["ko"]))
    plan = await LLMSitePlanner(chat, usage).plan(profile=prof, images=1, pages=None)
    rule = await RuleSitePlanner().plan(profile=prof, images=1, pages=None)
    assert [p.slug for p in plan.pages] == [p.slug for p in rule.pages]
    assert parts(usage) == [("planner", "plan.pages")] and words in usage.fallbacks[0]["reason"]
    assert plan.tagline == COPY["ko"]["tagline"]  # the copy is a separate part: still the LLM's
    assert plan_problems(plan, prof) == []


@pytest.mark.parametrize(
    ("data", "bad", "words"),
    [
        (KO, {"tagline": "Welcome to our cafe!", "story": "We roast beans every day for you."}, "Korean"),
        (
            EN,
            {"tagline": "어서 오세요, 블루 도어입니다", "story": "매일 아침 빵을 굽습니다. 들러 주세요."},
            "English",
        ),
        (EN, {"tagline": "Order at www.bluedoor.example today", "story": COPY["en"]["story"]}, "URL"),
        (EN, {"tagline": "Call 555-867-5309 for fresh bread", "story": COPY["en"]["story"]}, "phone number"),
        (EN, {"tagline": "<b>Fresh</b> bread every day", "story": COPY["en"]["story"]}, "markup"),
        (KO, {"tagline": "봄"}, "story: Field required"),
        (EN, {"tagline": ["Fresh", "bread"], "story": COPY["en"]["story"]}, "tagline"),
    ],
    ids=[
        "english-for-korean",
        "korean-for-english",
        "url",
        "invented-phone",
        "markup",
        "missing",
        "wrong-type",
    ],
)
async def test_bad_copy_falls_back_to_the_rules_copy(data: dict[str, Any], bad: dict, words: str) -> None:
    prof, usage = profile(data), Usage()
    chat = script(
        call("SitePages", pages=["index", "about", "gallery"]),
        call("SiteCopy", **bad),
        call("SiteCopy", **bad),
    )
    plan = await LLMSitePlanner(chat, usage).plan(profile=prof, images=1, pages=None)
    rule = await RuleSitePlanner().plan(profile=prof, images=1, pages=["about"])
    assert plan == rule
    assert parts(usage) == [("planner", "plan.copy")] and words in usage.fallbacks[0]["reason"]
    assert plan_problems(plan, prof) == []


# -- designer --------------------------------------------------------------------------------------------


async def rule_plan(data=KO):
    return await RuleSitePlanner().plan(profile=profile(data), images=1, pages=["about"])


@pytest.mark.parametrize(("colour", "style"), [("blue", "modern"), ("#1d4f91", "classic"), ("brown", "warm")])
async def test_designer_uses_the_llms_style_and_a_readable_brand_colour(colour: str, style: str) -> None:
    fonts, usage = FakeKoreanFonts(), Usage()
    plan = await rule_plan()
    chat = script(call("SiteStyle", style=style, brand_color=colour, hero="banner", button="pill"))
    design = await LLMSiteDesigner(chat, fonts, usage).design(profile=profile(KO), plan=plan, style=None)
    assert (design.style, design.hero, design.button) == (style, "banner", "pill")
    if colour.startswith("#"):
        assert design.palette.primary == colour
    rule = await RuleSiteDesigner(fonts).design(profile=profile(KO), plan=plan, style=style)
    assert design.palette.primary != rule.palette.primary
    assert design_problems(design, fonts.families()) == [] and usage.fallbacks == []


async def test_a_pale_brand_colour_keeps_its_hue_in_a_shade_that_reads() -> None:
    from kernel.color import contrast, hls

    fonts = FakeKoreanFonts()
    plan = await rule_plan()
    chat = script(call("SiteStyle", style="warm", brand_color="#f0d2e4", hero="split", button="pill"))
    design = await LLMSiteDesigner(chat, fonts, Usage()).design(profile=profile(KO), plan=plan, style=None)
    primary = design.palette.primary
    assert abs(hls(primary)[0] - hls("#f0d2e4")[0]) < 0.03  # still that pink, only darker
    for under in (design.palette.background, design.palette.surface, "#ffffff"):
        assert contrast(primary, under) >= 4.5
    assert contrast(design.palette.on_primary, primary) >= 4.5
    assert design_problems(design, fonts.families()) == []


async def test_a_style_hint_is_the_users_not_the_llms() -> None:
    plan = await rule_plan(EN)
    chat = script(call("SiteStyle", brand_color="green", hero="split", button="square"))
    design = await LLMSiteDesigner(chat, FakeKoreanFonts(), Usage()).design(
        profile=profile(EN), plan=plan, style="minimal"
    )
    assert design.style == "minimal" and "Style: minimal" in chat.seen[0][1].content


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({"style": "warm", "brand_color": "sunny", "hero": "split", "button": "pill"}, "brand_color"),
        ({"style": "gothic", "brand_color": "blue", "hero": "split", "button": "pill"}, "style"),
        ({"style": "warm", "brand_color": 255, "hero": "split", "button": "pill"}, "brand_color"),
        ({"style": "warm", "hero": "split", "button": "pill"}, "brand_color: Field required"),
    ],
    ids=["unknown-colour", "unknown-style", "wrong-type", "missing"],
)
async def test_bad_design_answers_fall_back_to_the_rules_design(answer: dict, words: str) -> None:
    fonts, usage = FakeKoreanFonts(), Usage()
    plan = await rule_plan()
    chat = script(call("SiteStyle", **answer), call("SiteStyle", **answer))
    design = await LLMSiteDesigner(chat, fonts, usage).design(profile=profile(KO), plan=plan, style=None)
    assert design == await RuleSiteDesigner(fonts).design(profile=profile(KO), plan=plan, style=None)
    assert parts(usage) == [("designer", "design")] and words in usage.fallbacks[0]["reason"]
    assert design_problems(design, fonts.families()) == []


async def test_a_design_fallback_keeps_the_style_the_rules_would_choose() -> None:
    """Not the first style of the list: a nail salon's rule design is not the café's warm one."""
    fonts = FakeKoreanFonts()
    salon = profile({**KO, "store_type": "네일 살롱", "store_strength": "꼼꼼한 관리"})
    plan = await rule_plan()
    rules = await RuleSiteDesigner(fonts).design(profile=salon, plan=plan, style=None)
    assert rules.style != "warm"
    bad = {"style": "gothic", "brand_color": "blue", "hero": "split", "button": "pill"}
    chat = script(call("SiteStyle", **bad), call("SiteStyle", **bad))
    assert await LLMSiteDesigner(chat, fonts).design(profile=salon, plan=plan, style=None) == rules


# -- developer -------------------------------------------------------------------------------------------


async def rule_site(data=KO):
    plan = await rule_plan(data)
    design = await RuleSiteDesigner(FakeKoreanFonts()).design(profile=profile(data), plan=plan, style=None)
    return plan, design


def problems_of(code, data, design, plan) -> list[str]:
    from agents.site_schemas import font_paths

    return code_problems(
        code, profile=profile(data), design=design, images=IMAGES, pages=[p.filename for p in plan.pages],
        extra=dict.fromkeys(font_paths(design), b""),
    )  # fmt: skip


async def test_developer_writes_each_pages_description_and_the_site_passes_every_check() -> None:
    plan, design = await rule_site(EN)
    usage = Usage()
    answer = {"index": "Fresh sourdough & croissants in Leeds.", "about": "Who we are and how we bake.",
              "gallery": "Photos of our bakery and bread."}  # fmt: skip
    chat = script(call("PageDescriptions", **answer))
    code = await LLMSiteDeveloper(chat, usage).code(
        profile=profile(EN), plan=plan, design=design, images=IMAGES
    )
    assert (
        '<meta name="description" content="Fresh sourdough &amp; croissants in Leeds.">'
        in code.pages["index.html"]
    )
    assert 'content="Who we are and how we bake."' in code.pages["about.html"]
    assert problems_of(code, EN, design, plan) == [] and usage.fallbacks == []


KO_DESC = {
    "index": "카페 봄에 오신 것을 환영합니다",
    "about": "카페 봄의 이야기를 소개합니다",
    "gallery": "매장 사진",
}


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({**KO_DESC, "about": "https://cafe.example 에서 확인하세요"}, "URL"),
        ({**KO_DESC, "about": "Our story and our beans"}, "Korean"),
        ({**KO_DESC, "index": "홈"}, "characters"),
        ({"index": KO_DESC["index"], "gallery": "매장 사진을 둘러보세요"}, "about: Field required"),
    ],
    ids=["url", "wrong-language", "too-short", "missing-page"],
)
async def test_bad_descriptions_fall_back_to_the_rules_code(answer: dict, words: str) -> None:
    plan, design = await rule_site(KO)
    usage = Usage()
    chat = script(call("PageDescriptions", **answer), call("PageDescriptions", **answer))
    code = await LLMSiteDeveloper(chat, usage).code(
        profile=profile(KO), plan=plan, design=design, images=IMAGES
    )
    rule = await RuleSiteDeveloper().code(profile=profile(KO), plan=plan, design=design, images=IMAGES)
    assert code == rule
    assert parts(usage) == [("developer", "code.descriptions")] and words in usage.fallbacks[0]["reason"]
    assert problems_of(code, KO, design, plan) == []


# -- the homepage job: a valid site, the fallbacks in provenance and events ----------------------------


@pytest.mark.parametrize("data", [KO, EN], ids=["ko", "en"])
async def test_a_homepage_job_with_a_hopeless_llm_still_makes_a_valid_site(tmp_path, data) -> None:
    chat = script(*[text("I am not sure.")] * 8)  # no function call, ever
    usage = Usage()
    fonts = FakeKoreanFonts()
    agents = {
        "planner": LLMSitePlanner(chat, usage),
        "designer": LLMSiteDesigner(chat, fonts, usage),
        "developer": LLMSiteDeveloper(chat, usage),
    }
    ctx = site_context(tmp_path, **agents)
    images = [ctx.artifacts.put_bytes_sync(tiny_png(12, 8), "image/png", 12, 8)]
    graph_input = {"profile": profile(data), "images": images, "pages": None, "style": None}
    result = await run_job(build_homepage_graph(InMemorySaver()), ctx, "j", graph_input, order=HOMEPAGE_NODES)
    assert result.status == "succeeded", result.error
    v = result.values
    assert v["checks"].passed, v["checks"].results
    assert {k: (p.agent, p.fallback) for k, p in v["provenance"].items()} == {
        "plan": ("llm", True),
        "design": ("llm", True),
        "code": ("llm", True),
    }
    fallbacks = [(e["node"], e["part"]) for e in result.events if e["type"] == "fallback"]
    assert fallbacks == [
        ("plan", "plan.pages"), ("plan", "plan.copy"), ("design", "design"), ("code", "code.descriptions")
    ]  # fmt: skip
    assert len(chat.seen) == 8  # each part: one answer and one repair


async def test_a_homepage_job_with_good_answers_is_the_llms_site(tmp_path) -> None:
    chat = script(
        call("SitePages", pages=["index", "about", "gallery"]),
        call("SiteCopy", **COPY["en"]),
        call("SiteStyle", style="modern", brand_color="teal", hero="centered", button="rounded"),
        call("PageDescriptions", index="Fresh bread on High Street.", about="Our bakers and our story.",
             gallery="Photos from the bakery."),
    )  # fmt: skip
    usage = Usage()
    fonts = FakeKoreanFonts()
    ctx = site_context(
        tmp_path,
        planner=LLMSitePlanner(chat, usage),
        designer=LLMSiteDesigner(chat, fonts, usage),
        developer=LLMSiteDeveloper(chat, usage),
    )
    graph_input = {"profile": profile(EN), "images": [], "pages": None, "style": None}
    result = await run_job(build_homepage_graph(InMemorySaver()), ctx, "j", graph_input, order=HOMEPAGE_NODES)
    assert result.status == "succeeded", result.error
    v = result.values
    assert v["checks"].passed and v["site"].pages == ["index.html", "about.html", "gallery.html"]
    assert v["plan"].tagline == COPY["en"]["tagline"] and v["design"].style == "modern"
    assert all(not p.fallback and p.agent == "llm" for p in v["provenance"].values())
    assert [e for e in result.events if e["type"] == "fallback"] == []
    index = ctx.artifacts.path(v["site"].files["index.html"]).read_text()
    assert 'content="Fresh bread on High Street."' in index
