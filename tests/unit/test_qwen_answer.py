"""Reading Qwen2-VL's answer into the `stats` schema: good, partial, truncated and useless answers."""

from __future__ import annotations

import json

import pytest

from gpu_runtime.qwen2vl import merge, parse_answer
from kernel.models import Box, Region, SceneAnalysis

CANVAS = (1000, 800)
PRODUCT = Box(x=350, y=300, w=300, h=400)


def region(name: str, box: Box) -> Region:
    return Region(
        name=name, box=box, emptiness=0.9, luminance=0.8, luminance_range=(0.7, 0.9), color="#dddddd"
    )


@pytest.fixture
def measured() -> SceneAnalysis:
    return SceneAnalysis(
        product_box=PRODUCT,
        regions=[
            region("text_area", Box(x=40, y=40, w=920, h=220)),
            region("left", Box(x=40, y=40, w=290, h=720)),
            region("right", Box(x=670, y=40, w=290, h=720)),
        ],
        dominant="#aa0000",
        accent="#aa0000",
        palette=["#aa0000", "#ffffff"],
        brightness=[[0.5]],
    )


GOOD = {
    # boxes in 0..1000 of width and height: "right" is x 670-960, y 50-950 -> canvas 670-960, 40-760
    "free_regions": [
        {"name": "right side", "box": [680, 60, 950, 940]},
        {"name": "top", "box": [50, 60, 950, 320]},
    ],
    "dominant": "#1E90FF",
    "accent": "#f80",
    "palette": ["#1e90ff", "rgb(255, 136, 0)", "#FFFFFF", "not a colour"],
}


def test_a_good_answer_in_prose_and_a_code_fence_ranks_regions_and_sets_colours(measured):
    text = f"Sure! Here is the layout:\n```json\n{json.dumps(GOOD)}\n```\nHope that helps."
    answer = parse_answer(text, CANVAS)
    assert answer.problems == []
    analysis, problems = merge(measured, answer)
    assert problems == []
    # the VLM's order wins where its boxes name measured regions; the measured values stay
    assert [r.name for r in analysis.regions] == ["right", "text_area", "left"]
    assert analysis.regions[0] == measured.regions[2]
    assert (analysis.dominant, analysis.accent) == ("#1e90ff", "#ff8800")
    assert analysis.palette == ["#1e90ff", "#ff8800", "#ffffff"]
    # what was measured is never replaced by an opinion
    assert analysis.product_box == PRODUCT and analysis.brightness == measured.brightness


def test_an_answer_with_no_json_falls_back_entirely_and_says_why(measured):
    answer = parse_answer("I see a red bottle on a table.", CANVAS)
    analysis, problems = merge(measured, answer)
    assert analysis == measured
    assert [p for p, _ in problems] == ["regions", "dominant", "accent", "palette"]
    assert all("no JSON object" in reason and "red bottle" in reason for _, reason in problems)
    assert parse_answer("", CANVAS).problems[0] == ("regions", "the answer was empty")


def test_a_truncated_answer_keeps_what_was_complete(measured):
    full = json.dumps({"dominant": "#123456", "accent": "#abcdef", "free_regions": GOOD["free_regions"]})
    cut = full[: full.index('"top"') + 12]  # the token limit hit inside the second region
    analysis, problems = merge(measured, parse_answer(cut, CANVAS))
    assert (analysis.dominant, analysis.accent) == ("#123456", "#abcdef")
    assert analysis.regions[0].name == "right"
    assert problems == [("palette", "not given")]
    assert analysis.palette == measured.palette


def test_a_long_answer_cut_by_the_token_limit_keeps_its_complete_part():
    # colours first, then far more regions than asked for; the limit hits inside the last region
    doc = {"dominant": "#123456", "accent": "#abcdef", "palette": ["#123456", "#abcdef"]}
    doc["free_regions"] = [{"name": f"r{i}", "box": [0, 0, 500, 500]} for i in range(300)]
    full = json.dumps(doc)
    answer = parse_answer(full[: len(full) - 30], CANVAS)
    assert (answer.dominant, answer.accent) == ("#123456", "#abcdef")
    assert answer.palette == ["#123456", "#abcdef"]
    # and noise the length of a long answer, with braces everywhere, is reported, not read
    noise = parse_answer("{ [ { " * 2000, CANVAS)
    assert noise.dominant is None and "holds no JSON object" in dict(noise.problems)["dominant"]


def test_partial_and_malformed_fields_fall_back_one_by_one(measured):
    text = json.dumps(
        {
            "regions": [{"name": "odd", "box": [900, 100, 100, 200]}, {"box": "nowhere"}],
            "dominant_color": "#12345",
            "accent": "#00ff00",
            "colors": [],
        }
    )
    analysis, problems = merge(measured, parse_answer(text, CANVAS))
    parts = dict(problems)
    assert set(parts) == {"regions", "dominant", "palette"}
    assert "odd" in parts["regions"] and "'#12345'" in parts["dominant"]
    assert analysis.accent == "#00ff00"
    assert analysis.dominant == measured.dominant and analysis.regions == measured.regions


def test_regions_on_the_product_or_matching_nothing_are_refused(measured):
    text = json.dumps(
        {
            "free_regions": [
                {"name": "on the bottle", "box": [360, 380, 640, 870]},
                {"name": "a sliver", "box": "(300, 900), (340, 990)"},
            ],
            "dominant": "#000000",
            "accent": "#ffffff",
            "palette": ["#000000"],
        }
    )
    analysis, problems = merge(measured, parse_answer(text, CANVAS))
    assert len(problems) == 1 and problems[0][0] == "regions"
    assert "on the bottle covers the product" in problems[0][1]
    assert analysis.regions == measured.regions


@pytest.mark.parametrize(
    "box",
    [
        [680, 60, 950, 940],
        {"x0": 680, "y0": 60, "x1": 950, "y1": 940},
        {"x": 680, "y": 60, "w": 270, "h": 880},
    ],
)
def test_box_formats(box, measured):
    text = json.dumps({"free_regions": [{"name": "r", "box": box}]})
    analysis, _ = merge(measured, parse_answer(text, CANVAS))
    assert analysis.regions[0].name == "right"


def test_qwen_grounding_box_string_is_read():
    answer = parse_answer('{"free_regions": [{"name": "top", "box": "(50,60),(950,320)"}]}', CANVAS)
    assert answer.regions == [("top", Box(x=50, y=48, w=900, h=208))]
