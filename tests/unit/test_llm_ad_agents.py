"""The ad's LLM planner, designer and developer: good answers are used, bad ones end in the rules."""

from __future__ import annotations

from typing import Any

import pytest

from agents.llm import Usage
from agents.llm_ad import LLMDesigner, LLMDeveloper, LLMPlanner, layer_problems
from agents.rules import RuleDesigner, RuleDeveloper
from kernel.models import AdCopy
from tests.unit.ad_support import BRIGHT, CANVAS, COPY, TEXT_AREA, lum, plan_for, ratio, scene
from tests.unit.fake_llm import bad_json, call, script, text
from tests.unit.fakes import FakeFonts

EN_COPY = AdCopy(
    headline="Fresh roast, every morning", subline="Beans delivered to your door", cta="Order now"
)


async def llm_plan(chat: Any, usage: Usage, copy: AdCopy = COPY, position: str = "top"):
    planner = LLMPlanner(chat, usage)
    return await planner.plan(
        copy=copy, analysis=scene(BRIGHT), canvas=CANVAS, text_position=position, text_area=TEXT_AREA
    )


# -- planner ---------------------------------------------------------------------------------------------


async def test_planner_takes_the_llms_alignment_inside_the_rules_box() -> None:
    usage = Usage()
    plan = await llm_plan(script(call("LayoutChoice", align="right", valign="top")), usage)
    rule = await plan_for(COPY, scene(BRIGHT), position="top")
    assert (plan.align, plan.valign) == ("right", "top")
    assert plan.box == rule.box and plan.blocks == rule.blocks  # the user's copy, never rewritten
    assert usage.fallbacks == []


@pytest.mark.parametrize(
    "answers",
    [
        [bad_json("LayoutChoice"), bad_json("LayoutChoice")],
        [
            call("LayoutChoice", align="middle", valign="top"),
            call("LayoutChoice", align="centre", valign="top"),
        ],
        [call("LayoutChoice", align="left"), text("left")],
        # valid JSON that breaks the rules: the shop asked for the text at the top
        [
            call("LayoutChoice", align="left", valign="bottom"),
            call("LayoutChoice", align="left", valign="bottom"),
        ],
    ],
    ids=["malformed", "wrong-value", "missing-field", "breaks-the-rules"],
)
async def test_planner_falls_back_to_the_rule_plan(answers: list[Any]) -> None:
    usage = Usage()
    plan = await llm_plan(script(*answers), usage, copy=EN_COPY)
    assert plan == await plan_for(EN_COPY, scene(BRIGHT), position="top")
    assert [(f["agent"], f["part"]) for f in usage.fallbacks] == [("planner", "layout")]


# -- designer --------------------------------------------------------------------------------------------


async def test_designer_uses_the_llms_font_and_button_colour_with_4_5_to_1() -> None:
    fonts, usage = FakeFonts(), Usage()
    plan = await plan_for(COPY, scene(BRIGHT))
    chat = script(call("StyleChoice", font="FakeRound", button="#2b6cd0"))
    design = await LLMDesigner(chat, fonts, usage).design(
        plan=plan, analysis=scene(BRIGHT), canvas=CANVAS, font=None
    )
    assert {b.font_family for b in design.blocks} == {"FakeRound"}
    assert design.button is not None and design.button.background == "#2b6cd0"
    cta = next(b for b in design.blocks if b.role == "cta")
    assert cta.color == design.button.color
    assert ratio(lum(cta.color), lum("#2b6cd0")) >= 4.5
    assert usage.fallbacks == []
    # Korean copy: only fonts with Hangul were offered
    offered = chat.seen[0][1].content
    assert "FakeRound" in offered and "LatinOnly" not in offered


async def test_designer_offers_latin_fonts_for_english_copy_and_keeps_the_users_font() -> None:
    fonts = FakeFonts()
    plan = await plan_for(EN_COPY, scene(BRIGHT))
    chat = script(call("StyleChoice", button="#8a5a2b"))
    design = await LLMDesigner(chat, fonts, Usage()).design(
        plan=plan, analysis=scene(BRIGHT), canvas=CANVAS, font="LatinOnly"
    )
    assert {b.font_family for b in design.blocks} == {"LatinOnly"}  # the user's choice is not the LLM's
    assert "Fonts:" not in chat.seen[0][1].content


@pytest.mark.parametrize(
    "answers",
    [
        [call("StyleChoice", font="Comic Sans", button="#2b6cd0")] * 2,
        [call("StyleChoice", font="LatinOnly", button="#2b6cd0")] * 2,  # no Hangul for Korean copy
        [call("StyleChoice", font="FakeSans", button=42)] * 2,
        [bad_json("StyleChoice", '{"font": "FakeSans", "button": "#2b')] * 2,
        # a palette colour on which neither white nor black text reaches 4.5:1
        [call("StyleChoice", font="FakeSans", button="#777777")] * 2,
    ],
    ids=["unknown-font", "font-without-hangul", "wrong-type", "malformed", "low-contrast"],
)
async def test_designer_falls_back_to_the_rule_design(answers: list[Any]) -> None:
    fonts, usage = FakeFonts(), Usage()
    analysis = scene(BRIGHT).model_copy(update={"palette": ["#8a5a2b", "#2b6cd0", "#777777"]})
    plan = await plan_for(COPY, analysis)
    design = await LLMDesigner(script(*answers), fonts, usage).design(
        plan=plan, analysis=analysis, canvas=CANVAS, font=None
    )
    assert design == await RuleDesigner(fonts).design(plan=plan, analysis=analysis, canvas=CANVAS, font=None)
    assert [(f["agent"], f["part"]) for f in usage.fallbacks] == [("designer", "style")]


# -- developer -------------------------------------------------------------------------------------------


async def rule_design():
    plan = await plan_for(COPY, scene(BRIGHT))
    design = await RuleDesigner(FakeFonts()).design(
        plan=plan, analysis=scene(BRIGHT), canvas=CANVAS, font=None
    )
    return plan, design


async def test_developer_applies_the_llms_finish_and_the_page_stays_safe() -> None:
    plan, design = await rule_design()
    usage = Usage()
    chat = script(call("FinishChoice", shadow="strong", corners="square"))
    layer = await LLMDeveloper(chat, usage).code(plan=plan, design=design, canvas=CANVAS)
    assert "text-shadow: 0 2px 6px" in layer.html and "border-radius: 0px" in layer.html
    assert layer_problems(layer.html, design) == []
    assert usage.fallbacks == []
    # every line where the design measured it: the same blocks as the rule developer's page
    rule = (await RuleDeveloper().code(plan=plan, design=design, canvas=CANVAS)).html
    assert layer.html.count('data-role="') == rule.count('data-role="') == len(design.blocks)


@pytest.mark.parametrize(
    "answers",
    [
        [call("FinishChoice", shadow="huge", corners="pill")] * 2,
        [call("FinishChoice", corners="pill")] * 2,
        [bad_json("FinishChoice")] * 2,
    ],
    ids=["wrong-value", "missing-field", "malformed"],
)
async def test_developer_falls_back_to_the_rule_page(answers: list[Any]) -> None:
    plan, design = await rule_design()
    usage = Usage()
    layer = await LLMDeveloper(script(*answers), usage).code(plan=plan, design=design, canvas=CANVAS)
    assert layer == await RuleDeveloper().code(plan=plan, design=design, canvas=CANVAS)
    assert [(f["agent"], f["part"]) for f in usage.fallbacks] == [("developer", "finish")]


async def test_layer_problems_catch_scripts_urls_and_missing_blocks() -> None:
    plan, design = await rule_design()
    html = (await RuleDeveloper().code(plan=plan, design=design, canvas=CANVAS)).html
    assert layer_problems(html, design) == []
    assert "the layer has a script" in layer_problems(
        html.replace("</body>", "<script>x()</script></body>"), design
    )
    with_url = html.replace("</style>", "body { background: url(https://x.example/a.png) }</style>")
    assert "the layer refers to a URL" in layer_problems(with_url, design)
    assert "block 'cta' is missing" in layer_problems(html.replace('data-role="cta"', ""), design)


# -- in the ad graph: fallbacks are job events and land in result.json --------------------------------------


async def test_an_ad_job_with_llm_agents_reports_each_fallback(tmp_path, product_photo) -> None:
    import json

    from langgraph.checkpoint.memory import InMemorySaver

    from checkpoints.artifacts import FileArtifactStore
    from checkpoints.saver import serializer
    from graph.ad import build_ad_graph
    from graph.context import AdContext
    from nodes.backends.compose import StudioCompositor
    from nodes.backends.stats import StatsAnalyzer
    from nodes.backends.studio import StudioBackdrop
    from service.outputs import write_result
    from service.running import run_job
    from service.workflows import WORKFLOWS, state_types
    from tests.unit.ad_support import ad_input
    from tests.unit.fakes import FakeRenderer, FakeSegmenter

    chat = script(
        call("LayoutChoice", align="left", valign="center"),  # planner: valid
        text("NanumGothic and blue"),  # designer: no function call…
        text("NanumGothic"),  # …twice: the rules design
        call("FinishChoice", shadow="none", corners="pill"),  # developer: valid
    )
    usage = Usage()
    ctx = AdContext(
        artifacts=FileArtifactStore(tmp_path / "artifacts"),
        segmenter=FakeSegmenter(),
        backdrop=StudioBackdrop(),
        compositor=StudioCompositor(),
        analyzer=StatsAnalyzer(),
        planner=LLMPlanner(chat, usage),
        designer=LLMDesigner(chat, FakeFonts(), usage),
        developer=LLMDeveloper(chat, usage),
        renderer=FakeRenderer(),
    )
    graph = build_ad_graph(InMemorySaver(serde=serializer(state_types())))
    result = await run_job(graph, ctx, "job-llm", ad_input(ctx, product_photo))
    assert result.status == "succeeded", result.error
    assert result.values["text_plan"].align == "left"
    assert "text-shadow" not in result.values["text_layer_html"]
    fallbacks = [e for e in result.events if e["type"] == "fallback"]
    assert fallbacks == [
        {
            "type": "fallback",
            "node": "design",
            "agent": "designer",
            "part": "style",
            "reason": fallbacks[0]["reason"],
        }
    ]
    assert "no answer" in fallbacks[0]["reason"]
    doc = write_result(WORKFLOWS["ad"], result, ctx.artifacts, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["events"] == doc["events"] == fallbacks
    assert usage.summary()["planner"]["calls"] == 1 and usage.summary()["designer"]["fallbacks"] == 1


async def test_the_designer_never_offers_code_or_formula_faces() -> None:
    from kernel.models import FontFace

    class Fonts(FakeFonts):
        def faces(self):
            return [
                *super().faces(),
                FontFace(family="FakeCoding", style="Regular", weight=400, file="/f/c.ttf", hangul=True),
                FontFace(family="Fake Sans Mono", style="Regular", weight=400, file="/f/m.ttf", hangul=False),
            ]

    plan = await plan_for(EN_COPY, scene(BRIGHT))
    chat = script(call("StyleChoice", font="LatinOnly", button="#2b6cd0"))
    design = await LLMDesigner(chat, Fonts(), Usage()).design(
        plan=plan, analysis=scene(BRIGHT), canvas=CANVAS, font=None
    )
    assert {b.font_family for b in design.blocks} == {"LatinOnly"}
    offered = chat.seen[0][1].content
    assert "LatinOnly" in offered and "FakeRound" in offered
    assert "FakeCoding" not in offered and "Mono" not in offered
