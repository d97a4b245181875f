"""The rule-based planner, designer and developer: text that fits, keeps off the product, reads at 4.5:1."""

from __future__ import annotations

import re
from html import unescape

import pytest

from agents.rules import BODY_MIN_PX, HEADLINE_MIN_PX, RuleDesigner, RulePlanner
from agents.schemas import BlockStyle, ButtonStyle, TextBlock
from kernel.errors import AdgraphError
from kernel.models import AdCopy, Box, Region
from tests.unit.ad_support import (
    BRIGHT,
    CANVAS,
    COPY,
    DARK,
    MID,
    PRODUCT,
    TEXT_AREA,
    code_for,
    design_for,
    lum,
    plan_for,
    ratio,
    rgb,
    scene,
    under_scrim,
    worst,
)
from tests.unit.fakes import FakeFonts


def inside(outer: Box, inner: Box) -> bool:
    return (
        outer.x <= inner.x
        and outer.y <= inner.y
        and inner.right <= outer.right
        and inner.bottom <= outer.bottom
    )


# -- planner ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("position", "valign"), [("top", "top"), ("center", "center"), ("auto", "center")])
async def test_plan_uses_the_reserved_text_area_with_margins(position: str, valign: str) -> None:
    plan = await plan_for(COPY, scene(BRIGHT), position=position)
    assert plan.region == "text_area"
    assert inside(TEXT_AREA, plan.box)
    assert plan.box.x >= 54 and plan.box.y >= 54 and plan.box.right <= 1026  # 5 % of 1080 from every edge
    assert plan.box.intersection(PRODUCT) == 0 and plan.box.bottom <= PRODUCT.y - 27
    assert (plan.align, plan.valign) == ("center", valign)
    assert [(b.role, b.text) for b in plan.blocks] == [
        ("headline", COPY.headline),
        ("subline", COPY.subline),
        ("cta", COPY.cta),
    ]


async def test_plan_leaves_out_empty_blocks_and_strips_whitespace() -> None:
    plan = await plan_for(AdCopy(headline="  새 시즌   컬렉션 ", subline="   ", cta="\n"), scene(BRIGHT))
    assert plan.blocks == [TextBlock(role="headline", text="새 시즌 컬렉션")]
    with pytest.raises(AdgraphError) as err:
        await plan_for(AdCopy(headline="   "), scene(BRIGHT))
    assert err.value.code == "INVALID_INPUT" and err.value.details["field"] == "headline"


async def test_plan_side_column_on_a_landscape_ad_is_left_aligned() -> None:
    column = Box(x=29, y=29, w=595, h=570)
    product = Box(x=700, y=60, w=420, h=500)
    analysis = scene(
        BRIGHT,
        regions=[
            Region(
                name="text_area",
                box=column,
                emptiness=1,
                luminance=0.9,
                luminance_range=BRIGHT,
                color="#eeeeee",
            )
        ],
        product=product,
    )
    plan = await RulePlanner().plan(
        copy=COPY, analysis=analysis, canvas=(1200, 628), text_position="center", text_area=column
    )
    assert plan.align == "left" and plan.valign == "center"
    assert plan.box.intersection(product) == 0 and plan.box.inside(1200, 628)


async def test_plan_without_a_reserved_area_takes_the_best_region_on_the_asked_side() -> None:
    top = Region(
        name="sky",
        box=Box(x=0, y=0, w=1080, h=380),
        emptiness=0.9,
        luminance=0.8,
        luminance_range=BRIGHT,
        color="#dddddd",
    )
    bottom = Region(
        name="floor",
        box=Box(x=0, y=900, w=1080, h=180),
        emptiness=0.7,
        luminance=0.3,
        luminance_range=(0.2, 0.4),
        color="#777777",
    )
    product = Box(x=300, y=400, w=480, h=480)
    analysis = scene(BRIGHT, regions=[top, bottom], product=product)
    assert (await plan_for(COPY, analysis, position="bottom")).region == "floor"
    assert (await plan_for(COPY, analysis, position="top")).region == "sky"
    assert (await plan_for(COPY, analysis, position="auto")).region == "sky"


async def test_plan_cuts_a_region_that_overlaps_the_product() -> None:
    overlapping = Region(
        name="text_area",
        box=Box(x=0, y=0, w=1080, h=700),
        emptiness=1,
        luminance=0.9,
        luminance_range=BRIGHT,
        color="#eeeeee",
    )
    plan = await plan_for(COPY, scene(BRIGHT, regions=[overlapping]))
    assert plan.box.intersection(PRODUCT) == 0
    assert plan.box.bottom <= PRODUCT.y


# -- designer: layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("band", [BRIGHT, DARK, MID], ids=["bright", "dark", "mid-grey"])
async def test_blocks_fit_the_plan_and_never_touch_the_product(band) -> None:
    plan, design, analysis = await design_for(band=band)
    assert [b.role for b in design.blocks] == ["headline", "subline", "cta"]
    for block in design.blocks:
        assert inside(plan.box, block.box), (block.role, block.box, plan.box)
        assert block.box.inside(*CANVAS)
        assert block.box.intersection(analysis.product_box) == 0
    boxes = [b.box for b in design.blocks]
    for upper, lower in zip(boxes, boxes[1:], strict=False):
        assert upper.bottom <= lower.y  # stacked, no overlap
    assert design.blocks[0].box.y == plan.box.y  # valign top


async def test_sizes_keep_the_hierarchy_and_legible_minimums() -> None:
    _, design, _ = await design_for()
    head, sub, cta = design.blocks
    assert head.font_size > sub.font_size >= BODY_MIN_PX
    assert cta.font_size >= BODY_MIN_PX and head.font_size >= HEADLINE_MIN_PX
    assert head.font_size <= round(0.1 * min(CANVAS))
    assert 0.4 <= sub.font_size / head.font_size <= 0.55
    assert len(head.lines) <= 3 and len(sub.lines) <= 3 and len(cta.lines) == 1


async def test_lines_are_measured_to_fit_with_a_safety_margin() -> None:
    fonts = FakeFonts()
    plan, design, _ = await design_for(fonts=fonts)
    for b in design.blocks:
        widest = max(fonts.text_width(line, b.font_family, b.font_weight, b.font_size) for line in b.lines)
        assert widest <= 0.94 * plan.box.w
        line_px = round(b.line_height * b.font_size)
        padding = 0 if b.role != "cta" else 2 * design.button.padding_y
        assert b.box.h == len(b.lines) * line_px + padding


async def test_a_longer_headline_gets_a_smaller_size() -> None:
    _, short, _ = await design_for(AdCopy(headline="가을 신상"))
    _, longer, _ = await design_for(AdCopy(headline="가을 신상 니트 컬렉션 오늘 단 하루 전 품목 무료 배송"))
    more = " 그리고 회원 전용 추가 할인 쿠폰"
    _, longest, _ = await design_for(
        AdCopy(headline="가을 신상 니트 컬렉션 오늘 단 하루 전 품목 무료 배송" + more)
    )
    sizes = [d.blocks[0].font_size for d in (short, longer, longest)]
    assert sizes[0] > sizes[1] > sizes[2], sizes


async def test_korean_headline_wraps_on_spaces_and_long_words_break_by_character() -> None:
    text = "가을 신상 니트 컬렉션 오늘 단 하루 전 품목 무료 배송"
    _, design, _ = await design_for(AdCopy(headline=text))
    lines = design.blocks[0].lines
    assert len(lines) >= 2
    assert " ".join(lines) == text
    unbroken = "가을신상니트컬렉션오늘단하루전품목무료배송이벤트"
    _, design, _ = await design_for(AdCopy(headline=unbroken))
    lines = design.blocks[0].lines
    assert len(lines) >= 2 and "".join(lines) == unbroken


async def test_the_users_line_breaks_are_kept() -> None:
    _, design, _ = await design_for(AdCopy(headline="여름 세일\n최대 50%"))
    assert design.blocks[0].lines == ["여름 세일", "최대 50%"]


async def test_a_headline_too_long_for_the_minimum_size_is_refused_with_the_limit() -> None:
    headline = "가을 신상 니트 컬렉션 " * 40
    with pytest.raises(AdgraphError) as err:
        await design_for(AdCopy(headline=headline))
    e = err.value
    assert e.code == "INVALID_INPUT" and e.details["field"] == "headline"
    limit = e.details["limit_chars"]
    assert 0 < limit < len(headline.strip())
    assert f"{HEADLINE_MIN_PX} px" in e.message and "1080x1080" in e.message
    assert f"about {limit} characters" in e.message and "shorten" in e.message
    # a headline of the reported length does fit
    await design_for(AdCopy(headline=headline.strip()[: int(limit * 0.9)].strip()))


async def test_a_subline_too_long_is_blamed_on_the_subline() -> None:
    with pytest.raises(AdgraphError) as err:
        await design_for(AdCopy(headline="가을 신상", subline="매일 아침 로스팅한 신선한 원두 " * 30))
    assert err.value.details["field"] == "subline"


# -- designer: fonts -------------------------------------------------------------------------------------


async def test_designer_picks_heavy_hangul_faces_by_rule() -> None:
    _, design, _ = await design_for()
    head, sub, cta = design.blocks
    assert head.font_family in {"FakeSans", "FakeRound"} and head.font_weight >= 700
    assert sub.font_weight == 400 and sub.font_family == "FakeSans"
    assert cta.font_weight >= 700


async def test_a_requested_font_is_used_for_every_block() -> None:
    _, design, _ = await design_for(font="fakesans")
    assert {b.font_family for b in design.blocks} == {"FakeSans"}
    assert design.blocks[0].font_weight == 700 and design.blocks[1].font_weight == 400


async def test_an_unknown_font_is_refused_naming_the_installed_ones() -> None:
    with pytest.raises(AdgraphError) as err:
        await design_for(font="Comic Sans MS")
    e = err.value
    assert e.code == "INVALID_INPUT" and e.details["field"] == "font"
    assert "Comic Sans MS" in e.message and "FakeSans" in e.message and "FakeRound" in e.message
    assert set(e.details["installed"]) >= {"FakeSans", "FakeRound", "LatinOnly"}


async def test_a_font_without_hangul_is_refused_for_korean_copy() -> None:
    with pytest.raises(AdgraphError) as err:
        await design_for(font="LatinOnly")
    assert err.value.code == "INVALID_INPUT" and "Hangul" in err.value.message
    _, design, _ = await design_for(AdCopy(headline="Autumn knitwear"), font="LatinOnly")
    assert design.blocks[0].font_family == "LatinOnly"


# -- designer: colour ------------------------------------------------------------------------------------


@pytest.mark.parametrize("band", [BRIGHT, DARK], ids=["bright", "dark"])
async def test_text_reaches_4_5_to_1_on_plain_backgrounds_without_a_scrim(band) -> None:
    _, design, _ = await design_for(band=band)
    assert design.scrim is None
    for b in design.blocks:
        if b.role == "cta":
            continue
        assert worst(b.color, band) >= 4.5, (b.role, b.color)
        assert b.contrast >= 4.5 and b.contrast == pytest.approx(worst(b.color, band), abs=0.011)


async def test_the_headline_takes_a_tint_of_the_product_when_it_reads() -> None:
    _, design, analysis = await design_for(band=BRIGHT)
    head = design.blocks[0]
    assert head.color not in {"#ffffff", "#111111"}
    r, g, b = rgb(head.color)
    assert b > r  # the accent (#2b6cd0) is blue; its dark tint stays blue


async def test_a_busy_mid_grey_region_gets_a_scrim_that_makes_4_5_to_1() -> None:
    _, design, analysis = await design_for(band=MID)
    scrim = design.scrim
    assert scrim is not None
    assert 0.35 <= scrim.opacity <= 0.92
    assert scrim.box.intersection(analysis.product_box) == 0 and scrim.box.inside(*CANVAS)
    for b in design.blocks:
        assert inside(scrim.box, b.box)
    blended = sorted((under_scrim(scrim, MID[0]), under_scrim(scrim, MID[1])))
    for b in design.blocks:
        if b.role != "cta":
            assert worst(b.color, (blended[0], blended[1])) >= 4.5, (b.role, b.color, scrim)
            assert b.contrast >= 4.5
    # without the scrim neither white nor near-black would do
    assert worst("#ffffff", MID) < 4.5 and worst("#111111", MID) < 4.5


@pytest.mark.parametrize("accent", ["#2b6cd0", "#ffd400", "#777777", "#e02020"])
async def test_the_cta_button_label_reaches_4_5_to_1(accent: str) -> None:
    analysis = scene(BRIGHT).model_copy(update={"accent": accent, "dominant": "#777777"})
    _, design, _ = await design_for(analysis=analysis)
    cta = design.blocks[-1]
    button = design.button
    assert isinstance(button, ButtonStyle)
    assert cta.role == "cta" and cta.color == button.color
    assert ratio(lum(button.color), lum(button.background)) >= 4.5
    assert cta.contrast >= 4.5
    assert button.radius * 2 >= cta.box.h - 1  # a pill


async def test_design_is_fast_and_deterministic() -> None:
    fonts = FakeFonts()
    _, first, _ = await design_for(fonts=fonts)
    _, second, _ = await design_for(fonts=fonts)
    assert first == second
    assert fonts.calls < 5000


# -- developer -------------------------------------------------------------------------------------------


async def test_html_escapes_user_text_and_loads_nothing() -> None:
    plan, design, _ = await design_for(
        AdCopy(headline="<script>alert(1)</script>", subline='"quoted" & <b>bold</b>', cta="<img src=x>"),
        band=MID,
    )
    page = await code_for(design, plan)
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert "<b>" not in page and "&lt;b&gt;" in page and "<img" not in page
    assert not re.search(r"https?:|//", page) and "@import" not in page and "url(" not in page
    assert '<meta charset="utf-8">' in page
    assert "default-src 'none'; style-src 'unsafe-inline'" in page
    assert "background: transparent" in page


async def test_html_shows_hostile_text_exactly_as_written_and_keeps_its_structure() -> None:
    hostile = AdCopy(
        headline="</div><script>alert(1)</script>", subline='Tom & Jerry\'s "deal"', cta="A&B <now>"
    )
    plan, design, _ = await design_for(hostile, band=MID)
    page = await code_for(design, plan)
    assert "<script" not in page.lower() and "&lt;/div&gt;&lt;script&gt;" in page
    assert page.count("<div") == page.count("</div>") == len(design.blocks) + (design.scrim is not None)
    for b in design.blocks:
        div = re.search(rf'<div class="block" data-role="{b.role}" style="[^"]*">(.*?)</div>', page)
        assert div is not None, b.role
        assert [unescape(line) for line in div.group(1).split("<br>")] == b.lines  # what Chromium shows


async def test_html_places_each_block_at_its_box() -> None:
    plan, design, _ = await design_for(band=MID)
    page = await code_for(design, plan)
    assert page.startswith("<!DOCTYPE html>")
    assert "width: 1080px; height: 1080px" in page
    for b in design.blocks:
        div = re.search(rf'<div class="block" data-role="{b.role}" style="([^"]*)">(.*?)</div>', page)
        assert div is not None, b.role
        style, body = div.groups()
        assert f"top: {b.box.y}px" in style
        assert f"left: {b.box.x + b.box.w / 2:g}px" in style  # centred on its box
        assert f"font-size: {b.font_size}px" in style and f"font-weight: {b.font_weight}" in style
        assert "sans-serif" in style and b.font_family in style
        assert body.split("<br>") == b.lines
    scrim = design.scrim
    assert scrim is not None
    s = scrim.box
    assert f"left: {s.x}px; top: {s.y}px; width: {s.w}px; height: {s.h}px" in page
    assert page.index('class="scrim"') < page.index('data-role="headline"')  # behind the text


async def test_html_anchors_left_aligned_blocks_on_their_left_edge() -> None:
    plan, design, _ = await design_for()
    left_plan = plan.model_copy(update={"align": "left"})
    page = await code_for(design, left_plan)
    assert f"left: {design.blocks[0].box.x}px" in page and "translateX" not in page


async def test_developer_refuses_bad_colours_and_drops_unsafe_css() -> None:
    plan, design, _ = await design_for()
    bad = design.model_copy(update={"blocks": [design.blocks[0].model_copy(update={"color": "red;x:y"})]})
    with pytest.raises(AdgraphError) as err:
        await code_for(bad, plan)
    assert err.value.code == "INVALID_INPUT"
    head: BlockStyle = design.blocks[0].model_copy(
        update={"font_family": "Evil'); } body { background: url(x"}
    )
    sneaky = design.model_copy(update={"blocks": [head], "text_shadow": "0 0 1px url(http://x)"})
    page = await code_for(sneaky, plan)
    body = page.split("<body>")[1]
    assert "url(" not in body and not re.search(r"https?:", page) and "}" not in body and "{" not in body


@pytest.mark.parametrize(
    "blocks",
    [
        [TextBlock(role="subline", text="no headline")],
        [TextBlock(role="headline", text="one"), TextBlock(role="headline", text="two")],
    ],
    ids=["no-headline", "two-headlines"],
)
async def test_designer_refuses_a_plan_it_cannot_lay_out_faithfully(blocks) -> None:
    plan = (await plan_for(COPY, scene(BRIGHT))).model_copy(update={"blocks": blocks})
    with pytest.raises(AdgraphError) as err:
        await RuleDesigner(FakeFonts()).design(plan=plan, analysis=scene(BRIGHT), canvas=CANVAS, font=None)
    assert err.value.code == "INVALID_INPUT" and err.value.details["field"] == "text_plan"
