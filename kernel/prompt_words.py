"""The words a background prompt is read for: colours, tones, materials, moods, wall and floor.

English and Korean, by kind and meaning. The embedded `studio` backdrop draws what they say; the FLUX
backend carries a Korean prompt over to English through the same vocabulary.
"""

from __future__ import annotations

import re

# Words by kind and meaning, "|" between synonyms. English: whole words (or two-word phrases) of the
# lower-cased prompt; a plural "s" is forgiven.
_EN: dict[str, dict[str, str]] = {
    "colour": {
        "red": "red|crimson|scarlet",
        "orange": "orange",
        "yellow": "yellow|lemon",
        "green": "green|emerald",
        "lightgreen": "light green",
        "olive": "olive|khaki",
        "sage": "sage",
        "mint": "mint",
        "teal": "teal",
        "turquoise": "turquoise|aqua",
        "sky": "sky blue",
        "blue": "blue|cobalt",
        "navy": "navy",
        "purple": "purple|violet",
        "lavender": "lavender|lilac",
        "magenta": "magenta",
        "pink": "pink|rose",
        "coral": "coral",
        "peach": "peach",
        "terracotta": "terracotta",
        "burgundy": "burgundy|wine",
        "brown": "brown",
        "beige": "beige|tan|sand",
        "cream": "cream",
        "ivory": "ivory|off white",
        "white": "white",
        "black": "black",
        "charcoal": "charcoal",
        "grey": "grey|gray",
        "silver": "silver",
        "gold": "gold|golden",
        "rosegold": "rose gold",
    },
    "tone": {
        "dark": "dark",
        "deep": "deep",
        "bright": "bright",
        "light": "light|pale",
        "pastel": "pastel",
        "warm": "warm",
        "cool": "cool|cold",
        "muted": "muted|dusty",
        "vivid": "vivid",
    },
    "material": {
        "wood": "wood|wooden|oak|walnut|timber",
        "marble": "marble|marbled",
        "linen": "linen|fabric|cloth",
        "concrete": "concrete|cement|stone",
        "paper": "paper|seamless",
    },
    "mood": {
        "soft": "soft|diffused|diffuse",
        "moody": "moody|dim",
        "dramatic": "dramatic",
        "natural": "natural|daylight|sunlight|sunlit|sunny|window",
        "spotlight": "spotlight|spotlit",
        "minimal": "minimal|minimalist|clean",
        "luxury": "luxury|luxurious|premium|elegant",
        "bright": "airy",
    },
    "wall": {"": "wall|background|backdrop"},
    "floor": {"": "floor|table|tabletop|surface|desk|counter|plinth"},
}

# Korean: substrings, since words carry particles (빨간색의, 나무로); the longest match wins, so 검은색 is
# black rather than 은색 (silver), and 아이스크림 (ice cream) is not 크림 (cream).
_KO: dict[str, dict[str, str]] = {
    "colour": {
        "red": "빨간|빨강|레드|적색",
        "orange": "주황|오렌지",
        "yellow": "노란|노랑|옐로",
        "green": "초록|녹색|그린",
        "lightgreen": "연두",
        "olive": "올리브|카키",
        "sage": "세이지",
        "mint": "민트",
        "teal": "청록",
        "sky": "하늘색",
        "blue": "파란|파랑|블루|청색",
        "navy": "남색|네이비",
        "purple": "보라|퍼플",
        "lavender": "라벤더",
        "magenta": "자주",
        "pink": "분홍|핑크",
        "coral": "코랄",
        "peach": "살구|피치",
        "terracotta": "테라코타",
        "burgundy": "버건디|와인색",
        "brown": "갈색|밤색|브라운",
        "beige": "베이지",
        "cream": "크림",
        "ivory": "아이보리",
        "white": "흰|하얀|화이트|백색",
        "black": "검은색|검은|검정|블랙|흑색",
        "charcoal": "차콜",
        "grey": "회색|그레이|잿빛",
        "silver": "은색|실버",
        "gold": "금색|골드|황금",
        "rosegold": "로즈골드",
    },
    "tone": {
        "dark": "어두운|어둡|다크",
        "deep": "짙은|진한|딥",
        "bright": "밝은|밝게|화사한",
        "light": "연한|옅은|라이트",
        "pastel": "파스텔",
        "warm": "따뜻|따스|웜톤",
        "cool": "시원|차가운|차갑|쿨톤",
        "muted": "차분한|톤다운",
        "vivid": "선명한|비비드",
    },
    "material": {
        "wood": "나무|원목|우드",
        "marble": "대리석|마블",
        "linen": "린넨|리넨|패브릭",
        "concrete": "콘크리트|시멘트",
        "paper": "종이|페이퍼",
    },
    "mood": {
        "soft": "부드러운|은은한|소프트",
        "moody": "무드",
        "dramatic": "드라마틱|극적",
        "natural": "자연광|햇살|햇빛|창가",
        "spotlight": "스포트라이트|핀조명",
        "minimal": "미니멀|심플|깔끔",
        "luxury": "고급|럭셔리",
    },
    "wall": {"": "벽|배경"},
    "floor": {"": "바닥|테이블|탁자|책상|선반|받침"},
    "ignore": {"": "아이스크림"},
}


def _flatten(table: dict[str, dict[str, str]]) -> dict[str, tuple[str, str]]:
    """word -> (kind, meaning)."""
    return {
        word: (kind, meaning)
        for kind, meanings in table.items()
        for meaning, words in meanings.items()
        for word in words.split("|")
    }


EN_WORDS = _flatten(_EN)
KO_WORDS = _flatten(_KO)
KO_RE = re.compile("|".join(re.escape(k) for k in sorted(KO_WORDS, key=len, reverse=True)))
"""Any Korean word of the vocabulary; the longest alternative first, so 검은색 is black, not 은색 (silver)."""
