"""Which script a text is in: Hangul, defined once.

Hangul is the precomposed syllables (U+AC00–U+D7A3), the conjoining jamo (U+1100–U+11FF) and the
compatibility jamo (U+3130–U+318F), so "ㅋㅋ" or a lone "ㄱ" counts as Korean too.
"""

from __future__ import annotations

import re

SYLLABLES = (0xAC00, 0xD7A3)
"""Precomposed Hangul syllables, 가 .. 힣."""
HANGUL_RANGES: tuple[tuple[int, int], ...] = (SYLLABLES, (0x1100, 0x11FF), (0x3130, 0x318F))
"""Code point ranges (inclusive) that are Hangul."""
_FINALS = 28
"""Syllables cycle through 27 final consonants and "none" (index 0)."""

_HANGUL = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in HANGUL_RANGES) + "]")


def is_hangul(ch: str) -> bool:
    """Whether the character `ch` is a Hangul syllable or jamo."""
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in HANGUL_RANGES)


def has_hangul(text: str) -> bool:
    """Whether `text` has any Hangul in it."""
    return _HANGUL.search(text) is not None


def is_syllable(ch: str) -> bool:
    """Whether `ch` is a precomposed Hangul syllable (가 .. 힣)."""
    return SYLLABLES[0] <= ord(ch) <= SYLLABLES[1]


def has_final_consonant(syllable: str) -> bool:
    """Whether a Hangul syllable ends in a final consonant (받침): 밥 yes, 바 no; ValueError otherwise."""
    if len(syllable) != 1 or not is_syllable(syllable):
        raise ValueError(f"not one Hangul syllable: {syllable!r}")
    return (ord(syllable) - SYLLABLES[0]) % _FINALS != 0


PICTOGRAPH_RANGES: tuple[tuple[int, int], ...] = (
    (0x1F000, 0x1FAFF),  # emoji: faces, symbols and pictographs, transport, flags (regional indicators), …
    (0x2300, 0x23FF),  # ⌚ ⏰ and other technical symbols
    (0x2600, 0x27BF),  # ☀ ❤ ✨ and the other miscellaneous symbols and dingbats
    (0x2B00, 0x2BFF),  # ⭐ ⬛
)
"""Code point ranges (inclusive) of emoji and other pictographs: characters a text font rarely has."""
_PICTOGRAPH = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in PICTOGRAPH_RANGES) + "]")


def pictographs(text: str) -> list[str]:
    """The distinct emoji and pictographs in `text`, in order of appearance."""
    return list(dict.fromkeys(_PICTOGRAPH.findall(text)))
