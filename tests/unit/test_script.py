"""The one Hangul definition: syllables and both jamo blocks are Korean; a syllable knows its 받침."""

from __future__ import annotations

import pytest

from kernel.script import has_final_consonant, has_hangul, is_hangul, is_syllable


@pytest.mark.parametrize("text", ["가", "힣", "여름 세일", "ㅋㅋ", "\u1100", "\u11ff", "SALE ㄱ"])
def test_syllables_and_jamo_are_hangul(text: str) -> None:
    assert has_hangul(text)


@pytest.mark.parametrize("text", ["", "Summer sale", "日本語", "\uabff", "\ud7a4", "\u318f\u3190"[1:]])
def test_other_scripts_are_not(text: str) -> None:
    assert not has_hangul(text)


def test_characters() -> None:
    assert is_hangul("ㅏ") and is_hangul("한") and not is_hangul("a")
    assert is_syllable("한") and not is_syllable("ㅎ")


def test_final_consonant() -> None:
    assert has_final_consonant("밥") and has_final_consonant("힣")
    assert not has_final_consonant("바") and not has_final_consonant("가")
    with pytest.raises(ValueError):
        has_final_consonant("ㅂ")
