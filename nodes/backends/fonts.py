"""The installed fonts, as fontconfig sees them (the same fonts headless Chromium uses), and text measuring.

Widths come from PIL with the raqm layout engine (HarfBuzz shaping, kerning on), which matches Chromium's
own layout of the same font file to a fraction of a pixel.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from PIL import ImageFont, features

from kernel.errors import AdgraphError
from kernel.models import FontFace

# fontconfig weight -> CSS weight (fontconfig.h: THIN 0 .. BLACK 210; BOOK 75 is a regular)
_FC_TO_CSS: tuple[tuple[int, int], ...] = (
    (0, 100),
    (40, 200),
    (50, 300),
    (55, 300),
    (75, 400),
    (80, 400),
    (100, 500),
    (180, 600),
    (200, 700),
    (205, 800),
    (210, 900),
)
_SCALABLE = (".ttf", ".otf", ".ttc", ".otc")
_FIELDS = ("family", "familylang", "style", "stylelang", "weight", "slant", "width", "index", "file", "lang")
_FORMAT = "\\t".join(f"%{{{f}}}" for f in _FIELDS) + "\\n"
_LAYOUT = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC


def css_weight(fc_weight: float) -> int:
    """Map a fontconfig weight (80 regular, 200 bold, 205 extra bold, …) to the nearest CSS weight."""
    return min(_FC_TO_CSS, key=lambda p: abs(p[0] - fc_weight))[1]


def _key(name: str) -> str:
    """Match family names loosely: case, spaces, hyphens and underscores don't matter."""
    name = unicodedata.normalize("NFC", name)
    return "".join(c for c in name.casefold() if c not in " -_")


def _split(value: str) -> list[str]:
    # fontconfig escapes commas inside a name as "\,"
    parts, cur, esc = [], [], False
    for ch in value:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _pick_lang(values: list[str], langs: list[str]) -> str:
    """The English (Latin) name when fontconfig says which one it is, else the first."""
    for v, lang in zip(values, langs, strict=False):
        if lang.startswith("en") and v:
            return v
    return values[0]


def _number(value: str, default: float) -> float:
    value = value.strip()
    if value.startswith("["):  # variable font: "[min max]"; its default instance is what CSS 400 gets
        return 80.0
    try:
        return float(value)
    except ValueError:
        return default


@dataclass(frozen=True)
class _Entry:
    face: FontFace
    index: int
    upright: bool
    normal_width: bool
    aliases: tuple[str, ...]


class FontconfigCatalog:
    """`FontCatalog` over fontconfig's `fc-list`; faces are read once, font objects are cached."""

    def __init__(self, fc_list: str = "fc-list") -> None:
        self._fc_list = fc_list
        self._entries: list[_Entry] | None = None
        self._names: dict[str, str] = {}
        self._chosen: dict[tuple[str, int], _Entry] = {}
        self._drawn: dict[str, bool] = {}
        self._lock = threading.Lock()

    # -- listing -------------------------------------------------------------------------------------

    def _load(self) -> list[_Entry]:
        with self._lock:
            if self._entries is None:
                entries = self._scan()
                for e in entries:  # canonical names win over aliases of other families
                    for alias in e.aliases:
                        self._names.setdefault(_key(alias), e.face.family)
                self._names.update({_key(e.face.family): e.face.family for e in entries})
                self._entries = entries
            return self._entries

    def _scan(self) -> list[_Entry]:
        exe = shutil.which(self._fc_list)
        if exe is None:
            raise AdgraphError(
                "INTERNAL",
                f"fontconfig's {self._fc_list!r} was not found; install fontconfig and fonts-nanum",
            )
        out = subprocess.run(
            [exe, "--format", _FORMAT], capture_output=True, check=True, timeout=30
        ).stdout.decode("utf-8", "replace")
        entries: dict[tuple[str, int, str, str], _Entry] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != len(_FIELDS):
                continue
            rec = dict(zip(_FIELDS, parts, strict=True))
            file = rec["file"]
            if not file.lower().endswith(_SCALABLE) or not rec["family"]:
                continue
            families = _split(rec["family"])
            family = _pick_lang(families, _split(rec["familylang"]))
            style = _pick_lang(_split(rec["style"]), _split(rec["stylelang"])) or "Regular"
            slant = _number(rec["slant"], 0)
            width = _number(rec["width"], 100)
            face = FontFace(
                family=family,
                style=style,
                weight=css_weight(_number(rec["weight"], 80)),
                file=file,
                hangul="ko" in rec["lang"].split("|"),
            )
            entry = _Entry(
                face=face,
                index=int(_number(rec["index"], 0)),
                upright=slant == 0,
                normal_width=width == 100,
                aliases=tuple(families),
            )
            entries.setdefault((family, face.weight, style, file), entry)
        return sorted(entries.values(), key=lambda e: (e.face.family, e.face.weight, e.face.style))

    def faces(self) -> list[FontFace]:
        return [e.face for e in self._load()]

    def families(self, *, hangul_only: bool = False) -> list[str]:
        """Installed family names (sorted), optionally only those covering Hangul."""
        return sorted({e.face.family for e in self._load() if e.face.hangul or not hangul_only})

    def draws(self, ch: str) -> bool:
        """Whether some installed font has a glyph for `ch`: what Chromium's fallback (fontconfig) would
        find when the chosen font lacks it. Asked of fontconfig once per character."""
        with self._lock:
            known = self._drawn.get(ch)
        if known is None:
            exe = shutil.which(self._fc_list)
            if exe is None:
                return True  # no fontconfig to ask: the fonts check (_scan) says what is wrong
            out = subprocess.run(
                [exe, f":charset={ord(ch):x}", "family"], capture_output=True, check=False, timeout=30
            ).stdout
            known = bool(out.strip())
            with self._lock:
                self._drawn[ch] = known
        return known

    def resolve(self, family: str) -> str:
        """The installed family's canonical name for `family` (case/space-insensitive; Korean names work).

        Raises INVALID_INPUT naming the installed families if there is none.
        """
        self._load()
        name = self._names.get(_key(family))
        if name is not None:
            return name
        hangul = self.families(hangul_only=True)
        others = [f for f in self.families() if f not in hangul]
        raise AdgraphError(
            "INVALID_INPUT",
            f"font {family!r} is not installed; choose one of the installed Korean fonts: "
            f"{', '.join(hangul) or '(none)'}" + (f" (other fonts: {', '.join(others)})" if others else ""),
            field="font",
            installed=hangul + others,
        )

    def face(self, family: str, weight: int) -> FontFace:
        """The installed face of `family` closest to `weight`, upright and normal width where possible."""
        return self._entry(family, weight).face

    def _entry(self, family: str, weight: int) -> _Entry:
        chosen = self._chosen.get((family, weight))
        if chosen is None:
            name = self.resolve(family)
            chosen = min(
                (e for e in self._load() if e.face.family == name),
                key=lambda e: (not e.upright, not e.normal_width, _weight_distance(e.face.weight, weight)),
            )
            self._chosen[(family, weight)] = chosen
        return chosen

    # -- measuring -----------------------------------------------------------------------------------

    def text_width(self, text: str, family: str, weight: int, size: int) -> float:
        """Advance width in pixels of `text` set in that face at `size` px."""
        if not text:
            return 0.0
        entry = self._entry(family, weight)
        return float(_font(entry.face.file, entry.index, int(size)).getlength(text))


def _weight_distance(have: int, want: int) -> float:
    # CSS font matching prefers, for bold requests, heavier faces; for light requests, lighter ones.
    d = abs(have - want)
    if (want >= 500 and have < want) or (want < 400 and have > want):
        d += 50
    return d


@lru_cache(maxsize=256)
def _font(file: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(file, size, index=index, layout_engine=_LAYOUT)
