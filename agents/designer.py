"""Rule-based designer: fonts from the installed Korean fonts, sizes that fit, colours with 4.5:1 contrast.

Sizes are fitted with the font files themselves (`FontCatalog.text_width`), so the developer can place
every line exactly and Chromium draws it where the design says.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel import color as C
from kernel.errors import AdgraphError
from kernel.models import Box, FontFace, Region, SceneAnalysis
from kernel.script import has_hangul

from .schemas import BlockStyle, ButtonStyle, Role, Scrim, TextBlock, TextDesign, TextPlan

if TYPE_CHECKING:
    from kernel.models import FontCatalog

HEADLINE_MIN_PX = 28
"""Smallest legible headline."""
BODY_MIN_PX = 18
"""Smallest legible subline / call to action."""
HEADLINE_MAX = 0.095
"""Largest headline, as a fraction of the canvas's short side."""
SUBLINE_RATIO = 0.48
CTA_RATIO = 0.42
MAX_LINES: dict[str, int] = {"headline": 3, "subline": 3, "cta": 1}
LINE_HEIGHT: dict[str, float] = {"headline": 1.15, "subline": 1.35, "cta": 1.2}
WIDTH_SAFETY = 0.94
"""Lines are fitted to this share of the box width, a margin for any renderer difference."""
MIN_CONTRAST = 4.5
SCRIM_MARGIN = 0.1
"""Extra contrast asked of a scrim: the blend is computed over a grey of the region's luminance."""
SCRIM_OPACITY = (0.35, 0.92)
SCRIM_PAD = 0.035
RADIUS = 0.02

HEADLINE_FAMILIES = ("NanumSquare", "NanumSquareRound", "NanumBarunGothic", "NanumGothic")
BODY_FAMILIES = ("NanumBarunGothic", "NanumGothic", "NanumSquare", "NanumSquareRound")
_PLAIN_LAST = ("coding", "mono", "math")  # families to choose only when nothing else covers the script


@dataclass(frozen=True)
class _Face:
    family: str
    weight: int


@dataclass(frozen=True)
class _Set:
    """A block set at one size: its wrapped lines and their metrics."""

    role: Role
    face: _Face
    size: int
    line_px: int
    lines: list[str]
    width: float
    pad_x: int = 0
    pad_y: int = 0

    @property
    def height(self) -> int:
        return len(self.lines) * self.line_px + 2 * self.pad_y

    @property
    def outer_width(self) -> int:
        return math.ceil(self.width) + 2 * self.pad_x


class RuleDesigner:
    """`Designer` by rule over a `FontCatalog` (anything with `faces()` and `text_width()`)."""

    def __init__(self, fonts: FontCatalog) -> None:
        self.fonts = fonts

    async def design(
        self, *, plan: TextPlan, analysis: SceneAnalysis, canvas: tuple[int, int], font: str | None
    ) -> TextDesign:
        _check(plan, canvas)
        faces = self._faces(plan.blocks, font)
        sets = self._fit(plan, canvas, faces)
        boxes = _stack(plan, sets, self._gaps(sets))
        region = next((r for r in analysis.regions if r.name == plan.region), None)
        under = _luminance_under(region, analysis, Box.around(boxes.values()), canvas)
        colours, scrim, shadow = _colours(under, analysis, plan, region, boxes, canvas)
        button, cta_contrast = None, 0.0
        if "cta" in sets:
            cta = sets["cta"]
            button = _button(analysis, region, cta)
            cta_contrast = C.contrast(button.color, button.background)
        blocks = []
        for role, s in sets.items():
            is_cta = role == "cta"
            colour, contrast = (button.color, cta_contrast) if is_cta and button else colours[role]
            blocks.append(
                BlockStyle(
                    role=role,
                    font_family=s.face.family,
                    font_weight=s.face.weight,
                    font_size=s.size,
                    line_height=s.line_px / s.size,
                    color=colour,
                    lines=s.lines,
                    box=boxes[role],
                    contrast=math.floor(contrast * 100) / 100,
                )
            )
        return TextDesign(blocks=blocks, scrim=scrim, button=button, text_shadow=shadow)

    # -- fonts ---------------------------------------------------------------------------------------

    def _faces(self, blocks: list[TextBlock], requested: str | None) -> dict[str, _Face]:
        faces: list[FontFace] = list(self.fonts.faces())
        by_family: dict[str, list[FontFace]] = {}
        for f in faces:
            by_family.setdefault(f.family, []).append(f)
        hangul_families = sorted({f.family for f in faces if f.hangul})
        needs_hangul = any(has_hangul(b.text) for b in blocks)
        if requested is not None:
            # a catalog that knows more names for its fonts (Korean names, say) resolves them itself
            resolve = getattr(self.fonts, "resolve", None)
            family = _match_family(resolve(requested) if callable(resolve) else requested, by_family)
            if family is None:
                others = sorted(set(by_family) - set(hangul_families))
                raise AdgraphError(
                    "INVALID_INPUT",
                    f"font {requested!r} is not installed; choose one of the installed Korean fonts: "
                    f"{', '.join(hangul_families) or '(none)'}"
                    + (f" (other fonts: {', '.join(others)})" if others else ""),
                    field="font",
                    installed=hangul_families + others,
                )
            if needs_hangul and family not in hangul_families:
                raise AdgraphError(
                    "INVALID_INPUT",
                    f"font {family!r} has no Korean (Hangul) letters but the copy has; choose one of: "
                    f"{', '.join(hangul_families)}",
                    field="font",
                    installed=hangul_families,
                )
            head_family = body_family = family
        else:
            pool = hangul_families or sorted(by_family)
            if not pool:
                raise AdgraphError("INTERNAL", "no fonts are installed; install fonts-nanum (fontconfig)")
            head_family = _prefer(HEADLINE_FAMILIES, pool, by_family, 700)
            body_family = _prefer(BODY_FAMILIES, pool, by_family, 400)
        head_weights = sorted({f.weight for f in by_family[head_family]})
        body_weights = sorted({f.weight for f in by_family[body_family]})
        heavy = [w for w in head_weights if w >= 700]
        return {
            "headline": _Face(head_family, max(heavy) if heavy else head_weights[-1]),
            "subline": _Face(body_family, min(body_weights, key=lambda w: (abs(w - 400), w))),
            "cta": _Face(head_family, min(head_weights, key=lambda w: (abs(w - 700), -w))),
        }

    # -- sizes ---------------------------------------------------------------------------------------

    def _measure(self, face: _Face, size: int) -> Callable[[str], float]:
        return lambda text: float(self.fonts.text_width(text, face.family, face.weight, size))

    def _set(
        self, block: TextBlock, face: _Face, size: int, max_width: float, *, limit: bool = True
    ) -> _Set | None:
        """`block` wrapped at `size`, or None if it takes more than its lines (or a line can't fit)."""
        role = block.role
        line_px = round(size * LINE_HEIGHT[role])
        pad_x = pad_y = 0
        if role == "cta":
            pad_x, pad_y = round(1.2 * size), round(0.55 * size)
        measure = self._measure(face, size)
        lines = wrap(block.text, measure, max_width - 2 * pad_x, max_lines=MAX_LINES[role] if limit else None)
        if lines is None:
            return None
        width = max(measure(line) for line in lines)
        if limit and width > max_width - 2 * pad_x:
            return None
        return _Set(role, face, size, line_px, lines, width, pad_x, pad_y)

    def _balanced(self, s: _Set, text: str, max_width: float) -> _Set:
        """`s` with its lines evened out (same count, so the same height): no lone word on the last line."""
        if s.role == "cta" or len(s.lines) < 2:
            return s
        measure = self._measure(s.face, s.size)
        lines = _balance(text, measure, max_width - 2 * s.pad_x, len(s.lines))
        width = max(measure(line) for line in lines)
        return _Set(s.role, s.face, s.size, s.line_px, lines, width, s.pad_x, s.pad_y)

    @staticmethod
    def _sizes(headline: int) -> dict[str, int]:
        return {
            "headline": headline,
            "subline": max(BODY_MIN_PX, round(SUBLINE_RATIO * headline)),
            "cta": max(BODY_MIN_PX, round(CTA_RATIO * headline)),
        }

    @staticmethod
    def _gaps(sets: dict[str, _Set]) -> list[int]:
        head = sets["headline"].size
        roles = list(sets)
        return [round((0.55 if after == "cta" else 0.35) * head) for after in roles[1:]]

    def _fit(self, plan: TextPlan, canvas: tuple[int, int], faces: dict[str, _Face]) -> dict[str, _Set]:
        max_width = WIDTH_SAFETY * plan.box.w

        def attempt(size: int) -> dict[str, _Set] | None:
            sizes = self._sizes(size)
            sets: dict[str, _Set] = {}
            for block in plan.blocks:
                s = self._set(block, faces[block.role], sizes[block.role], max_width)
                if s is None:
                    return None
                sets[block.role] = s
            fits = sum(s.height for s in sets.values()) + sum(self._gaps(sets)) <= plan.box.h
            return sets if fits else None

        # Whether the copy fits only gets easier as the size shrinks: binary search the largest size.
        lo, hi = HEADLINE_MIN_PX, max(HEADLINE_MIN_PX, round(HEADLINE_MAX * min(canvas)))
        best = attempt(lo)
        if best is None:
            raise self._too_long(plan, canvas, faces, max_width)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            sets = attempt(mid)
            if sets is None:
                hi = mid - 1
            else:
                lo, best = mid, sets
        texts = {b.role: b.text for b in plan.blocks}
        return {role: self._balanced(s, texts[role], max_width) for role, s in best.items()}

    def _too_long(
        self, plan: TextPlan, canvas: tuple[int, int], faces: dict[str, _Face], max_width: float
    ) -> AdgraphError:
        """Say which block does not fit at the minimum sizes, and about how many characters would."""
        sizes = self._sizes(HEADLINE_MIN_PX)
        sets = {
            b.role: self._set(b, faces[b.role], sizes[b.role], max_width, limit=False) for b in plan.blocks
        }
        fitted = {r: s for r, s in sets.items() if s is not None}
        over = [
            b
            for b in plan.blocks
            if (s := sets[b.role]) is None
            or len(s.lines) > MAX_LINES[b.role]
            or s.width > max_width - 2 * s.pad_x
        ]
        texts = {b.role: b.text for b in plan.blocks}
        if over:
            block = over[0]
        else:  # each fits its line limit, together they are too tall: blame the one with the most lines
            block = max(
                (b for b in plan.blocks if b.role != "cta"),
                key=lambda b: (len(fitted[b.role].lines), len(b.text)),
            )
        role = block.role
        s = fitted.get(role)
        gaps = sum(self._gaps(fitted)) if fitted else 0
        others = sum(x.height for r, x in fitted.items() if r != role)
        line_px = s.line_px if s else round(sizes[role] * LINE_HEIGHT[role])
        pad_x, pad_y = (s.pad_x, s.pad_y) if s else (0, 0)
        room_lines = max(0, (plan.box.h - others - gaps - 2 * pad_y) // line_px)
        lines_allowed = min(MAX_LINES[role], room_lines)
        text = texts[role].replace("\n", "")
        face = faces[role]
        avg = self.fonts.text_width(text, face.family, face.weight, sizes[role]) / max(1, len(text))
        per_line = int((max_width - 2 * pad_x) // max(avg, 1e-6))
        limit = max(0, per_line * lines_allowed)
        minimum = sizes[role]
        where = f"this {canvas[0]}x{canvas[1]} ad"
        if limit == 0:
            message = (
                f"{role} does not fit: at the minimum legible size of {minimum} px {where} has no room left "
                f"for it in the text area ({plan.box.w}x{plan.box.h} px) — shorten the copy or leave it out"
            )
        else:
            message = (
                f"{role} is {len(text)} characters; at the minimum legible size of {minimum} px {where} "
                f"fits about {limit} characters in the text area — shorten it"
            )
        return AdgraphError("INVALID_INPUT", message, field=role, limit_chars=limit, length=len(text))


# -- text ---------------------------------------------------------------------------------------------


def wrap(
    text: str, measure: Callable[[str], float], max_width: float, *, max_lines: int | None = None
) -> list[str] | None:
    """Greedy word wrap (spaces; the user's newlines are kept); a word wider than a line breaks by characters.

    None as soon as more than `max_lines` lines are needed.
    """
    lines: list[str] = []

    def push(line: str) -> bool:
        lines.append(line)
        return max_lines is None or len(lines) <= max_lines

    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if measure(candidate) <= max_width:
                current = candidate
                continue
            if current and not push(current):
                return None
            current = ""
            if measure(word) <= max_width:
                current = word
                continue
            pieces = _break_word(word, measure, max_width)
            for piece in pieces[:-1]:
                if not push(piece):
                    return None
            current = pieces[-1]
        if current and not push(current):
            return None
    return lines


def _break_word(word: str, measure: Callable[[str], float], max_width: float) -> list[str]:
    pieces, current = [], ""
    for ch in _graphemes(word):
        if current and measure(current + ch) > max_width:
            pieces.append(current)
            current = ch
        else:
            current += ch
    pieces.append(current)
    return pieces


def _graphemes(word: str) -> Iterable[str]:
    # keep combining marks and joiners with their base character
    cluster = ""
    for ch in word:
        if cluster and (unicodedata.combining(ch) or ch in "\u200d\ufe0f" or cluster.endswith("\u200d")):
            cluster += ch
        else:
            if cluster:
                yield cluster
            cluster = ch
    if cluster:
        yield cluster


def _balance(text: str, measure: Callable[[str], float], max_width: float, n: int) -> list[str]:
    """The narrowest wrap with the same number of lines: no lone word on the last line."""
    lo, hi = max_width / n * 0.9, max_width
    best = wrap(text, measure, max_width) or []
    for _ in range(12):
        mid = (lo + hi) / 2
        lines = wrap(text, measure, mid, max_lines=n)
        if lines is not None and max(measure(line) for line in lines) <= mid:
            best, hi = lines, mid
        else:
            lo = mid
    return best


def _stack(plan: TextPlan, sets: dict[str, _Set], gaps: list[int]) -> dict[str, Box]:
    """Each block's box on the canvas: stacked in order, aligned inside `plan.box`."""
    box = plan.box
    total = sum(s.height for s in sets.values()) + sum(gaps)
    y = {"top": box.y, "bottom": box.bottom - total}.get(plan.valign, box.y + (box.h - total) // 2)
    out: dict[str, Box] = {}
    for i, (role, s) in enumerate(sets.items()):
        w = min(s.outer_width, box.w)
        x = {"left": box.x, "right": box.right - w}.get(plan.align, box.x + (box.w - w) // 2)
        out[role] = Box(x=x, y=y, w=w, h=s.height)
        y += s.height + (gaps[i] if i < len(gaps) else 0)
    return out


# -- colour -------------------------------------------------------------------------------------------


def _luminance_under(
    region: Region | None, analysis: SceneAnalysis, area: Box, canvas: tuple[int, int]
) -> tuple[float, float]:
    """The luminance band under the text: the region's 2nd..98th percentile, else the grid cells under it.

    Grid cells are means, so the band from them is widened a little to stand in for percentiles.
    """
    if region is not None:
        lo, hi = region.luminance_range
        return min(lo, hi), max(lo, hi)
    grid = analysis.brightness
    if not grid or not grid[0]:
        return 0.0, 1.0
    rows, cols = len(grid), len(grid[0])
    cell_w, cell_h = canvas[0] / cols, canvas[1] / rows
    under = [
        grid[r][c]
        for r in range(rows)
        for c in range(cols)
        if c * cell_w < area.right
        and (c + 1) * cell_w > area.x
        and r * cell_h < area.bottom
        and (r + 1) * cell_h > area.y
    ] or [v for row in grid for v in row]
    return max(0.0, min(under) - 0.05), min(1.0, max(under) + 0.05)


def _tint(base: str, dark: bool, band: tuple[float, float], target: float) -> str | None:
    """The most colourful tint of `base` (dark or light) with at least `target` contrast on `band`."""
    if C.saturation(base) < 0.2:
        return None
    _, lightness, _ = C.hls(base)
    steps = (
        [min(lightness, 0.42) - 0.02 * i for i in range(20)]
        if dark
        else [max(lightness, 0.72) + 0.02 * i for i in range(14)]
    )
    for light in steps:
        if not 0.04 <= light <= 0.97:
            continue
        candidate = C.with_lightness(base, light, max_saturation=0.85)
        if C.worst_contrast(candidate, band) >= target:
            return candidate
    return None


def _pick_text(
    band: tuple[float, float], analysis: SceneAnalysis, dark: bool, target: float = MIN_CONTRAST
) -> tuple[str, str] | None:
    """(headline, subline) colours of one polarity that reach `target` contrast on `band`, or None."""
    neutral = C.NEAR_BLACK if dark else C.WHITE
    if C.worst_contrast(neutral, band) < target:
        return None
    for base in (analysis.accent, analysis.dominant):
        tint = _tint(base, dark, band, target)
        if tint is not None:
            return tint, neutral
    return neutral, neutral


def _colours(
    band: tuple[float, float],
    analysis: SceneAnalysis,
    plan: TextPlan,
    region: Region | None,
    boxes: dict[str, Box],
    canvas: tuple[int, int],
) -> tuple[dict[str, tuple[str, float]], Scrim | None, str | None]:
    """Text colours (with their worst-case contrast), the scrim if one is needed, and a text shadow."""
    dark_first = C.worst_contrast(C.NEAR_BLACK, band) >= C.worst_contrast(C.WHITE, band)
    for dark in (dark_first, not dark_first):
        picked = _pick_text(band, analysis, dark)
        if picked is not None:
            shadow = "0 1px 6px rgba(255, 255, 255, 0.35)" if dark else "0 2px 10px rgba(0, 0, 0, 0.35)"
            return _assign(picked, band), None, shadow
    scrim, blended, dark = _scrim(band, analysis, plan, region, boxes, canvas)
    neutral = C.NEAR_BLACK if dark else C.WHITE
    picked = _pick_text(blended, analysis, dark, MIN_CONTRAST + SCRIM_MARGIN) or (neutral, neutral)
    return _assign(picked, blended), scrim, None


def _assign(picked: tuple[str, str], band: tuple[float, float]) -> dict[str, tuple[str, float]]:
    head, body = picked
    return {
        "headline": (head, C.worst_contrast(head, band)),
        "subline": (body, C.worst_contrast(body, band)),
        "cta": (body, C.worst_contrast(body, band)),
    }


def _scrim(
    band: tuple[float, float],
    analysis: SceneAnalysis,
    plan: TextPlan,
    region: Region | None,
    boxes: dict[str, Box],
    canvas: tuple[int, int],
) -> tuple[Scrim, tuple[float, float], bool]:
    """The most transparent panel that gives the text 4.5:1 over the whole band, and the band it leaves."""
    tinted = C.saturation(analysis.dominant) >= 0.2
    options = [
        (C.with_lightness(analysis.dominant, 0.09, 0.5) if tinted else "#0d0d0d", C.WHITE, False),
        (C.with_lightness(analysis.dominant, 0.96, 0.5) if tinted else "#ffffff", C.NEAR_BLACK, True),
    ]
    best: tuple[float, str, bool] | None = None
    lo_op, hi_op = SCRIM_OPACITY
    for scrim_colour, text, dark_text in options:
        for step in range(round((hi_op - lo_op) * 100) + 1):
            opacity = round(lo_op + step / 100, 2)
            blended = _blend(scrim_colour, opacity, band)
            if C.worst_contrast(text, blended) >= MIN_CONTRAST + SCRIM_MARGIN:
                if best is None or opacity < best[0]:
                    best = (opacity, scrim_colour, dark_text)
                break
    if best is None:  # unreachable with these colours, kept so a change to them fails safe
        best = (hi_op, options[0][0], False)
    opacity, scrim_colour, dark_text = best
    blended = _blend(scrim_colour, opacity, band)
    short = min(canvas)
    pad = round(SCRIM_PAD * short)
    text_box = Box.around(boxes.values())
    bounds = plan.box.union(region.box) if region is not None else plan.box
    edge = pad * 3 // 4  # keep the panel's rounded corners off the canvas's edges
    area = text_box.expand(pad).clip(bounds.expand(pad))
    area = area.clip(Box(x=edge, y=edge, w=canvas[0] - 2 * edge, h=canvas[1] - 2 * edge)).union(text_box)
    area = area.avoid(analysis.product_box, keep=text_box) or text_box
    scrim = Scrim(color=scrim_colour, opacity=opacity, box=area, radius=round(RADIUS * short))
    return scrim, blended, dark_text


def _blend(colour: str, opacity: float, band: tuple[float, float]) -> tuple[float, float]:
    ends = C.blend_over(colour, opacity, band[0]), C.blend_over(colour, opacity, band[1])
    return min(ends), max(ends)


def _button(analysis: SceneAnalysis, region: Region | None, cta: _Set) -> ButtonStyle:
    """A pill in the product's accent colour, darkened or lightened until its label has 4.5:1."""
    base = next((c for c in (analysis.accent, analysis.dominant) if C.saturation(c) >= 0.25), None)
    behind = region.color if region is not None else "#808080"
    if base is None:  # a grey product: a neutral pill that stands out from what is behind it
        dark_pill = C.relative_luminance(behind) > 0.18
        return ButtonStyle(
            background=C.NEAR_BLACK if dark_pill else C.WHITE,
            color=C.WHITE if dark_pill else C.NEAR_BLACK,
            padding_x=cta.pad_x,
            padding_y=cta.pad_y,
            radius=cta.height // 2,
        )
    h, lightness, s = C.hls(base)
    options = []
    for label, direction in ((C.WHITE, -1), (C.NEAR_BLACK, 1)):
        for i in range(101):
            light = lightness + direction * 0.01 * i
            if not 0.0 <= light <= 1.0:
                break
            background = C.from_hls(h, light, s)
            if C.contrast(label, background) >= MIN_CONTRAST:
                # prefer small changes to the brand colour and a pill that stands out from the scene
                stands_out = C.contrast(background, behind)
                options.append((i / 100 - (0.1 if stands_out >= 1.5 else 0.0), background, label))
                break
    _, background, label = min(options)
    return ButtonStyle(
        background=background, color=label, padding_x=cta.pad_x, padding_y=cta.pad_y, radius=cta.height // 2
    )


# -- helpers ------------------------------------------------------------------------------------------


def _check(plan: TextPlan, canvas: tuple[int, int]) -> None:
    """Refuse a plan this designer cannot lay out faithfully (a planner's bug, never silently patched)."""
    roles = [b.role for b in plan.blocks]
    problem = None
    if "headline" not in roles:
        problem = "has no headline block"
    elif len(set(roles)) != len(roles):
        problem = f"repeats a block role ({', '.join(roles)})"
    elif any(not b.text.strip() for b in plan.blocks):
        problem = "has an empty block"
    elif plan.box.w <= 0 or plan.box.h <= 0 or not plan.box.inside(*canvas):
        problem = f"box {plan.box} is empty or outside the {canvas[0]}x{canvas[1]} canvas"
    if problem is not None:
        raise AdgraphError("INVALID_INPUT", f"the text plan {problem}", field="text_plan")


def _key(name: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFC", name).casefold() if c not in " -_")


def _match_family(requested: str, families: Iterable[str]) -> str | None:
    key = _key(requested)
    return next((f for f in families if _key(f) == key), None)


def _prefer(
    preferred: tuple[str, ...], pool: list[str], by_family: dict[str, list[FontFace]], weight: int
) -> str:
    """The first preferred family installed, else the plainest family with a face nearest `weight`."""
    for name in preferred:
        if name in pool:
            return name

    def rank(family: str) -> tuple[bool, int, str]:
        odd = any(tag in family.casefold() for tag in _PLAIN_LAST)
        nearest = min(abs(f.weight - weight) for f in by_family[family])
        return odd, nearest, family

    return min(pool, key=rank)
