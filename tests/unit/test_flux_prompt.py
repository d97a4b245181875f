"""What FLUX is asked for: its text encoders read English, so a Korean prompt is carried over in words."""

from __future__ import annotations

from gpu_runtime.flux import DEFAULT_PROMPT, STYLE, flux_prompt, generation_size


def test_english_prompts_pass_through_with_the_backdrop_style():
    assert flux_prompt("  warm beige linen table ") == f"warm beige linen table, {STYLE}"
    assert flux_prompt("") == f"{DEFAULT_PROMPT}, {STYLE}"


def test_korean_prompts_reach_flux_as_english_words():
    assert (
        flux_prompt("따뜻한 베이지 린넨 배경, 부드러운 자연광")
        == f"warm beige linen wall soft natural, {STYLE}"
    )
    assert flux_prompt("검은색 대리석 테이블") == f"black marble tabletop, {STYLE}"  # not 은색 (silver)
    assert flux_prompt("아무 말") == f"{DEFAULT_PROMPT}, {STYLE}"  # nothing it knows: the default


def test_generation_size_keeps_the_aspect_in_multiples_of_16():
    assert generation_size((1080, 1080), 1024) == (1024, 1024)
    assert generation_size((1200, 628), 1024) == (1024, 528)  # 535.9 rounded to 16
    assert generation_size((1080, 1920), 1024) == (576, 1024)
    assert generation_size((1200, 628), 64) == (64, 32)
