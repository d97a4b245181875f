"""The embedded `studio` background: a procedural product-photography backdrop.

A wall above a floor that meets it around 60–70 % of the height, either as one seamless paper sweep or
as a tabletop (wood, marble, linen, concrete) with a visible back edge and a perspective texture; a broad
key light, a floor pool and a vignette; fine deterministic grain so gradients never band. Colours come
from the prompt (English and Korean colour, tone and material words); without colour words the wall is
chosen to harmonise with the product's dominant colour while standing apart from it in luminance.

Everything smooth is computed on a coarse grid (1/8 scale) and upscaled with OpenCV; the floor texture is
a small wrapping tile seen through a perspective remap; only that remap and the grain are full resolution.
A 1080x1920 backdrop takes about 35 ms as a paper sweep and 70-95 ms as a textured tabletop on two cores.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from kernel.color import RGB, contrast, hex_to_rgb, hls, relative_luminance, rgb_from_hls
from kernel.prompt_words import EN_WORDS, KO_RE, KO_WORDS

MAX_SIDE = 4096  # a 4096x4096 backdrop already needs about 200 MB of float buffers
MATERIALS = ("wood", "marble", "linen", "concrete", "paper")

# --------------------------------------------------------------------------------------------- words

COLOURS: dict[str, RGB] = {
    "red": (192, 52, 50),
    "orange": (232, 132, 54),
    "yellow": (238, 204, 84),
    "green": (84, 150, 96),
    "lightgreen": (170, 210, 118),
    "olive": (122, 126, 64),
    "sage": (160, 178, 148),
    "mint": (168, 224, 200),
    "teal": (40, 128, 130),
    "turquoise": (64, 188, 186),
    "sky": (150, 196, 236),
    "blue": (58, 108, 188),
    "navy": (30, 44, 88),
    "purple": (120, 78, 160),
    "lavender": (190, 172, 226),
    "magenta": (158, 52, 116),
    "pink": (236, 164, 184),
    "coral": (240, 128, 108),
    "peach": (246, 192, 160),
    "terracotta": (194, 106, 76),
    "burgundy": (112, 30, 46),
    "brown": (122, 82, 56),
    "beige": (224, 206, 178),
    "cream": (244, 234, 210),
    "ivory": (244, 240, 226),
    "white": (240, 239, 236),
    "black": (28, 28, 30),
    "charcoal": (56, 58, 62),
    "grey": (128, 128, 128),
    "silver": (190, 192, 196),
    "gold": (204, 164, 82),
    "rosegold": (196, 138, 130),
}

_EN_PHRASE_RE = re.compile(r"\b(?:" + "|".join(k for k in EN_WORDS if " " in k) + r")\b")
_BREAK = re.compile(r"[,.;:!?/\n]|\band\b|\bwith\b|그리고|위에|위의")

# Natural colours of the surfaces when the prompt names a material but no colour for it.
MATERIAL_BASE: dict[str, RGB] = {
    "wood": (176, 124, 82),
    "marble": (234, 232, 228),
    "linen": (214, 201, 180),
    "concrete": (152, 151, 147),
}


@dataclass(frozen=True)
class BackdropSpec:
    """What a background prompt asks for, as far as the studio backend understands it."""

    wall: RGB | None = None
    """The wall colour the prompt names (or implies through a coloured floor), its tone words applied."""
    floor: RGB | None = None
    """The floor / tabletop colour the prompt names, e.g. "red marble" or "dark wood"."""
    material: str | None = None
    """One of MATERIALS; None is a seamless paper sweep."""
    moods: tuple[str, ...] = ()
    """Lighting words found: soft, moody, dramatic, natural, spotlight, minimal, luxury, bright."""
    tones: tuple[str, ...] = ()
    """Tone words not tied to a named colour (dark, pastel, warm, ...); they shape the chosen colours."""


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    kind: str
    value: str
    tones: tuple[str, ...] = ()


def _find_hits(text: str) -> list[_Hit]:
    taken = np.zeros(len(text) + 1, dtype=bool)
    hits: list[_Hit] = []

    def claim(start: int, end: int, kind: str, value: str) -> None:
        if not taken[start:end].any():
            taken[start:end] = True
            if kind != "ignore":
                hits.append(_Hit(start, end, kind, value))

    for m in _EN_PHRASE_RE.finditer(text):
        claim(m.start(), m.end(), *EN_WORDS[m.group()])
    for m in re.finditer(r"[a-z]+", text):
        word = m.group()
        entry = EN_WORDS.get(word) or EN_WORDS.get(word.removesuffix("s"))
        if entry:
            claim(m.start(), m.end(), *entry)
    for m in KO_RE.finditer(text):  # longest alternative first: 검은색 is black, not 은색 (silver)
        claim(m.start(), m.end(), *KO_WORDS[m.group()])
    return sorted(hits, key=lambda h: h.start)


def _near(text: str, a: _Hit, b: _Hit, max_words: int) -> bool:
    """True when `b` follows `a` within `max_words` words and no clause break lies between them."""
    gap = text[a.end : b.start]
    return not _BREAK.search(gap) and len(gap.split()) <= max_words


def parse_prompt(prompt: str) -> BackdropSpec:
    """Read colour, tone, material and lighting words (English and Korean) from a background prompt.

    A tone word (dark, pastel, 연한, ...) shapes the colour or material right after it, otherwise the whole
    backdrop. A colour right before a material or floor word ("red marble", "빨간 대리석 테이블") colours
    the floor and tints the wall; before a wall word, the wall; otherwise the first colour is the wall and
    a second one the floor. Unknown words are ignored.
    """
    text = prompt.lower()
    hits = _find_hits(text)

    # Tone words attach to the next colour/material word next to them, else apply everywhere.
    global_tones: list[str] = []
    items: list[_Hit] = []
    pending: list[_Hit] = []
    for h in hits:
        if h.kind == "tone":
            pending.append(h)
            continue
        if h.kind in ("colour", "material"):
            attached = tuple(t.value for t in pending if _near(text, t, h, 1))
            global_tones += [t.value for t in pending if t.value not in attached and t.value != "light"]
            h = _Hit(h.start, h.end, h.kind, h.value, attached)
        else:
            global_tones += [t.value for t in pending if t.value != "light"]
        pending = []
        items.append(h)
    global_tones += [t.value for t in pending if t.value != "light"]
    tones = tuple(dict.fromkeys(global_tones))

    wall: RGB | None = None
    floor: RGB | None = None
    free: list[RGB] = []
    material: str | None = None
    material_tones: tuple[str, ...] = ()
    for i, h in enumerate(items):
        if h.kind == "material" and material is None:
            material, material_tones = h.value, h.tones
        if h.kind != "colour":
            continue
        rgb = _apply_tones(COLOURS[h.value], h.tones + tones)
        nxt = items[i + 1] if i + 1 < len(items) else None
        prev = items[i - 1] if i > 0 else None
        if nxt is not None and nxt.kind in ("material", "floor") and _near(text, h, nxt, 2):
            role = "floor"
        elif nxt is not None and nxt.kind == "wall" and _near(text, h, nxt, 2):
            role = "wall"
        elif prev is not None and prev.kind in ("wall", "floor") and _near(text, prev, h, 1):
            role = prev.kind  # 벽은 흰색, 바닥은 회색
        else:
            role = "free"
        if role == "wall" and wall is None:
            wall = rgb
        elif role == "floor" and floor is None:
            floor = rgb
        else:
            free.append(rgb)
    for rgb in free:
        if wall is None:
            wall = rgb
        elif floor is None:
            floor = rgb
    if wall is None and floor is not None:
        wall = _wall_from_floor(floor)
    if floor is None and material in MATERIAL_BASE and material_tones:
        floor = _apply_tones(MATERIAL_BASE[material], material_tones + tones)
    moods = [h.value for h in items if h.kind == "mood"]
    if "bright" in tones:
        moods.append("bright")
    return BackdropSpec(wall, floor, material, tuple(dict.fromkeys(moods)), tones)


# ------------------------------------------------------------------------------------------- colours


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _apply_tones(rgb: RGB, tones: tuple[str, ...]) -> RGB:
    for tone in dict.fromkeys(tones):
        h, l, s = hls(rgb)  # noqa: E741
        if tone == "dark":
            rgb = rgb_from_hls(h, max(0.07, l * 0.55), s * 0.9)
        elif tone == "deep":
            rgb = rgb_from_hls(h, l * 0.8, s * 1.15)
        elif tone == "bright":
            rgb = rgb_from_hls(h, l + (0.9 - l) * 0.4 if l < 0.9 else l, s)
        elif tone == "light":
            rgb = rgb_from_hls(h, l + (0.93 - l) * 0.55 if l < 0.93 else l, s * 0.8)
        elif tone == "pastel":
            rgb = rgb_from_hls(h, max(l, 0.84), min(s, 0.55) if s > 0.05 else s)
        elif tone == "muted":
            rgb = rgb_from_hls(h, l, s * 0.55)
        elif tone == "vivid":
            rgb = rgb_from_hls(h, l, min(1.0, s * 1.35))
        elif tone == "warm":
            rgb = _mix(rgb, (250, 205, 160), 0.18)
        elif tone == "cool":
            rgb = _mix(rgb, (180, 205, 238), 0.18)
    return rgb


def _wall_from_floor(floor: RGB) -> RGB:
    """A wall that belongs with a coloured floor: same hue, calmer and a step lighter."""
    h, l, s = hls(floor)  # noqa: E741
    return rgb_from_hls(h, l + 0.12 if l < 0.35 else min(0.93, l + 0.1), s * 0.75)


def _floor_from_wall(wall: RGB) -> RGB:
    """The floor of a paper sweep: the same paper, a step darker (or lighter on a dark wall)."""
    h, l, s = hls(wall)  # noqa: E741
    return rgb_from_hls(h, l - 0.07 if l > 0.3 else l + 0.06, s * 0.95)


def _harmony(product: RGB | None, tones: tuple[str, ...], moods: tuple[str, ...]) -> RGB:
    """A wall for a product: a muted analogous tone of its hue (a warm or cool grey for a grey product),
    light, mid or dark (a muted complementary tone): the first, in that order (dark first for moody
    prompts), whose contrast with the product reaches 2:1, so the product never melts into the wall."""
    if product is None:
        h, s, neutral = 0.09, 0.08, True
    else:
        h, _, s = hls(product)
        r, _, b = product
        neutral = s < 0.15 or max(product) - min(product) < 24
        if neutral:
            h, s = (0.08, 0.09) if r >= b else (0.58, 0.07)
        else:
            h, s = h + 0.04, min(0.38, max(0.14, s * 0.45))
    wants_dark = "dark" in tones or bool({"moody", "dramatic", "luxury", "spotlight"} & set(moods))
    light = rgb_from_hls(h, 0.87 if "bright" not in tones else 0.92, s)
    mid = rgb_from_hls(h, 0.6, s * 0.8)
    # Dark walls read best in the opposite hue, barely saturated (slate behind gold, plum behind green).
    dark = rgb_from_hls(h if neutral else h + 0.46, 0.24, s if neutral else min(0.22, s * 0.8))
    order = (dark, mid, light) if wants_dark else (light, mid, dark)
    first = order[0]
    if product is not None:
        good = [c for c in order if contrast(c, product) >= 2.0]
        first = good[0] if good else max(order, key=lambda c: contrast(c, product))
    return _apply_tones(first, tuple(t for t in tones if t not in ("dark", "bright", "light")))


def _nudge(colour: RGB, product: RGB | None, min_ratio: float) -> RGB:
    """Move a colour's lightness away from the product's until their contrast reaches `min_ratio`;
    also calm a colour that shares the product's hue and saturation, so the product stays the subject."""
    if product is None:
        return colour
    h, l, s = hls(colour)  # noqa: E741
    ph, _, ps = hls(product)
    if s > 0.3 and ps > 0.3 and min(abs(h - ph), 1 - abs(h - ph)) < 0.06:
        s *= 0.7
        colour = rgb_from_hls(h, l, s)
    if contrast(colour, product) >= min_ratio:
        return colour
    darker = relative_luminance(colour) < relative_luminance(product)
    if not darker and l > 0.9 or darker and l < 0.1:
        darker = not darker
    step = -0.02 if darker else 0.02
    for _ in range(50):
        l = min(0.97, max(0.04, l + step))  # noqa: E741
        colour = rgb_from_hls(h, l, s)
        if contrast(colour, product) >= min_ratio or l in (0.97, 0.04):
            break
    return colour


def _parse_palette(product_palette: list[str]) -> RGB | None:
    for entry in product_palette:
        try:
            return hex_to_rgb(entry)
        except ValueError as exc:
            raise ValueError(f"product_palette entry {entry!r} is not a '#rrggbb' colour") from exc
    return None


def _material_colours(material: str, base: RGB) -> tuple[RGB, RGB]:
    """The two colours a material texture blends between (texture value 0 -> first, 1 -> second)."""
    h, l, s = hls(base)  # noqa: E741
    if material == "wood":
        return rgb_from_hls(h, min(0.9, l * 1.12), s), rgb_from_hls(h - 0.01, l * 0.62, min(1.0, s * 1.1))
    if material == "marble":
        vein = rgb_from_hls(h, l * 0.45, s * 0.4) if l > 0.6 else rgb_from_hls(h, min(0.9, l + 0.4), s * 0.35)
        return base, vein
    if material == "linen":
        return rgb_from_hls(h, min(0.96, l * 1.04), s), rgb_from_hls(h, l * 0.8, s)
    return rgb_from_hls(h, min(0.95, l * 1.1), s), rgb_from_hls(h, l * 0.74, s)  # concrete


# -------------------------------------------------------------------------------------------- light


@dataclass(frozen=True)
class _Light:
    glow: float
    sigma: float
    vignette: float
    exposure: float
    pool: float
    key_x: float
    key_y: float
    window: bool
    tint: tuple[float, float, float]


def _light_for(moods: tuple[str, ...], tones: tuple[str, ...], rng: np.random.Generator) -> _Light:
    # Draw every random number up front, so the same seed places the light the same way for any prompt.
    key_x, key_y, side = rng.uniform(0.25, 0.75), rng.uniform(0.1, 0.35), rng.choice([-1.0, 1.0])
    vary = rng.uniform(0.8, 1.25)  # how hard this seed's key light is
    glow, sigma, vignette, exposure, pool = 0.24, 0.5 / vary, 0.22, 1.0, 0.08
    window = False
    if "soft" in moods or "minimal" in moods:
        glow, sigma, vignette = 0.2, 0.75, 0.16
    if "luxury" in moods:
        glow, sigma, vignette, exposure = 0.45, 0.38, 0.45, 0.94
    if "moody" in moods or "dramatic" in moods:
        glow, sigma, vignette, exposure = 0.75, 0.3, 0.6, 0.85
        if "dramatic" in moods:
            key_x = 0.5 + side * 0.22
    if "spotlight" in moods:
        glow, sigma, vignette, exposure, pool = 1.1, 0.2, 0.55, 0.82, 0.35
        key_x, key_y = 0.5, 0.42
    if "natural" in moods:
        key_x, key_y, window = 0.5 + side * 0.3, 0.2, True
    if "bright" in moods:
        vignette, exposure = min(vignette, 0.12), 1.06
    glow, pool = glow * vary, pool * vary
    tint = (1.0, 1.0, 1.0)
    if "warm" in tones or "natural" in moods:
        tint = (1.035, 1.0, 0.94)
    elif "cool" in tones:
        tint = (0.96, 1.0, 1.045)
    return _Light(glow, sigma, vignette, exposure, pool, key_x, key_y, window, tint)


def _light_field(xs: np.ndarray, ys: np.ndarray, w: int, h: int, horizon: float, light: _Light) -> np.ndarray:
    """Relative illumination (about 1 on the wall) at the coarse sample points `xs` x `ys` (pixels)."""
    diag = float(np.hypot(w, h))
    x = xs[None, :]
    y = ys[:, None]
    d2 = ((x - light.key_x * w) ** 2 + (y - light.key_y * h) ** 2) / diag**2
    field_ = 1.0 - 0.35 * light.glow + light.glow * np.exp(-d2 / (2 * light.sigma**2))
    # A soft pool of light on the floor where the product will stand.
    pool_y = horizon + 0.5 * (h - horizon)
    p2 = ((x - light.key_x * w) / (0.45 * w)) ** 2 + ((y - pool_y) / (0.22 * h)) ** 2
    field_ = field_ + light.pool * np.exp(-p2)
    if light.window:
        # Window light: a patch of sun through panes, with thin mullion shadows, falling diagonally.
        slope = 1.0 if light.key_x < 0.5 else -1.0
        p = (x * slope + 0.7 * y) / (0.2 * diag)
        panes = np.clip((np.sin(2 * np.pi * p) + 0.92) * 5.0, 0.0, 1.0)
        reach = np.exp(-d2 / (2 * 0.2**2))
        field_ = field_ + 0.35 * panes * reach
    u = (x / w - 0.5) * 2.0
    v = (y / h - 0.5) * 2.0
    r = np.sqrt(u * u + v * v) / np.sqrt(2.0)
    t = np.clip((r - 0.3) / 0.7, 0.0, 1.0)
    field_ = field_ * (1.0 - light.vignette * t * t * (3 - 2 * t))
    return field_.astype(np.float32)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _coarse_axis(start: int, n: int, m: int) -> np.ndarray:
    """Full-resolution positions of `m` coarse samples that cv2.resize stretches over `n` pixels."""
    return start + (np.arange(m, dtype=np.float64) + 0.5) * (n / m) - 0.5


# ----------------------------------------------------------------------------------------- textures

TILE_V, TILE_U = 512, 1024  # a wrapping texture tile, in texels (rows: depth, columns: across)


def _upsample_wrapped(a: np.ndarray, fy: int, fx: int, cubic: bool) -> np.ndarray:
    """Enlarge a periodic array by whole factors so that the result is periodic too (no seam)."""
    if fy == fx == 1:
        return a
    pad = 2 if cubic else 1  # the interpolation reads this many samples either side: wrap them in
    padded = np.pad(a, pad, mode="wrap")
    big = cv2.resize(
        padded,
        (padded.shape[1] * fx, padded.shape[0] * fy),
        interpolation=cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR,
    )
    return big[pad * fy : (pad + a.shape[0]) * fy, pad * fx : (pad + a.shape[1]) * fx]


def _noise(
    rng: np.random.Generator, cells_v: int, cells_u: int, shape: tuple[int, int] = (TILE_V, TILE_U)
) -> np.ndarray:
    """Smooth value noise in 0..1 that tiles seamlessly over `shape`, from `cells_v` x `cells_u` random
    cells (powers of two, at most the shape): bicubic to 8 samples a cell, then linear the rest."""
    grid = rng.random((cells_v, cells_u), dtype=np.float32)
    fv, fu = min(8, shape[0] // cells_v), min(8, shape[1] // cells_u)
    big = _upsample_wrapped(grid, fv, fu, cubic=True)
    return _upsample_wrapped(big, shape[0] // big.shape[0], shape[1] // big.shape[1], cubic=False)


def _to_tile(a: np.ndarray) -> np.ndarray:
    """Stretch a periodic field sampled on a power-of-two fraction of the tile to the whole tile."""
    return _upsample_wrapped(a, TILE_V // a.shape[0], TILE_U // a.shape[1], cubic=False)


def _fbm(
    rng: np.random.Generator,
    cells: tuple[int, int],
    octaves: int,
    turbulent: bool = False,
    at_tile: bool = True,
) -> np.ndarray:
    """Fractal noise: `octaves` layers from `cells`, each twice as fine and half as strong. Summed at the
    finest layer's own resolution (8 samples a cell); stretched to the tile unless `at_tile` is False."""
    cv, cu = cells
    fine = (min(TILE_V, cv * 2 ** (octaves - 1) * 8), min(TILE_U, cu * 2 ** (octaves - 1) * 8))
    total = np.zeros(fine, np.float32)
    amp, norm = 1.0, 0.0
    for _ in range(octaves):
        n = _noise(rng, min(cv, fine[0]), min(cu, fine[1]), fine)
        total += amp * (np.abs(2 * n - 1) if turbulent else n)
        norm += amp
        amp *= 0.5
        cv, cu = cv * 2, cu * 2
    total /= norm
    return _to_tile(total) if at_tile else total


def _wood(rng: np.random.Generator) -> np.ndarray:
    """Planks running across the table: growth-ring lines, fine streaks, a tone per board, seams."""
    board = 128
    rows = np.arange(TILE_V, dtype=np.float32)[:, None]
    index = (rows // board).astype(int)
    n_boards = TILE_V // board
    board_tone = rng.uniform(-0.1, 0.1, n_boards).astype(np.float32)[index]
    board_phase = rng.uniform(0, 8, n_boards).astype(np.float32)[index]
    warp = _fbm(rng, (4, 4), 3) + 0.13 * _fbm(rng, (16, 16), 2)
    fine = _noise(rng, 256, 16)
    for i, shift in enumerate(rng.integers(0, TILE_U, n_boards)):  # each board cut from another log
        rows_i = slice(i * board, (i + 1) * board)
        warp[rows_i] = np.roll(warp[rows_i], shift, axis=1)
        fine[rows_i] = np.roll(fine[rows_i], shift, axis=1)
    grain = rows / 12.0 + 6.0 * warp + board_phase
    ring = grain - np.floor(grain)
    ring *= ring
    within = rows - index * board
    seam = (0.5 * np.exp(-(np.minimum(within, board - within) ** 2) / 1.5)).astype(np.float32)
    tex = 0.3 * fine + 0.42 * ring * ring + 0.25 * warp + board_tone + seam
    return np.clip(tex, 0.0, 1.0)


def _marble(rng: np.random.Generator) -> np.ndarray:
    """Cloudy stone crossed by flowing diagonal veins that swell, thin and fade, and fainter threads."""
    # Smooth fields are combined at the resolution they were made at; only the veins need the full tile.
    flow = _fbm(rng, (2, 4), 5, at_tile=False)
    turb = _fbm(rng, (8, 16), 3, turbulent=True, at_tile=False)
    cloud = _fbm(rng, (4, 8), 4, at_tile=False)
    width = _noise(rng, 4, 8, (32, 64))
    show = _smoothstep(0.3, 0.7, _fbm(rng, (2, 4), 2, at_tile=False))
    u = np.arange(TILE_U, dtype=np.float32)[None, :] * (2 * np.pi / TILE_U)
    v = np.arange(TILE_V, dtype=np.float32)[:, None] * (2 * np.pi / TILE_V)
    main = np.abs(np.sin(_to_tile(3.5 * flow + 0.7 * turb) + (2 * u + v)))
    minor = np.abs(np.sin(_to_tile(6.0 * flow + 2.0 * turb) + (5 * u - 3 * v)))
    veins = np.exp(main * _to_tile(-1.0 / (0.012 + 0.05 * width * width)))
    veins *= _to_tile(0.25 + 0.75 * show)
    threads = np.exp(minor * (-1.0 / 0.015))
    threads *= _to_tile(0.35 * (1.0 - show))
    drift = np.exp(main * (-1.0 / 0.3))  # a soft haze along the strong veins
    drift *= _to_tile(0.18 * show)
    np.maximum(veins, threads, out=veins)
    veins *= 0.75
    veins += drift
    veins += _to_tile(0.14 * cloud)
    return np.clip(veins, 0.0, 1.0, out=veins)


def _linen(rng: np.random.Generator) -> np.ndarray:
    """A fine plain weave with slubs (thicker threads) in both directions and soft cloth undulation."""
    u = np.arange(TILE_U, dtype=np.float32)[None, :]
    v = np.arange(TILE_V, dtype=np.float32)[:, None]
    a = np.cos(2 * np.pi * u / 4.0)
    b = np.cos(2 * np.pi * v / 4.0)
    weave = 0.5 + 0.22 * (a + b) + 0.18 * a * b
    slub_u = _noise(rng, 256, 16)
    slub_v = _noise(rng, 8, 512)
    cloth = _fbm(rng, (2, 4), 3)
    tex = 0.25 + 0.3 * weave + 0.18 * (slub_u - 0.5) + 0.18 * (slub_v - 0.5) + 0.35 * (cloth - 0.5)
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def _concrete(rng: np.random.Generator) -> np.ndarray:
    """Cast cement: soft clouds, finer mottling, a sand-grain speckle and a few small dark pores."""
    clouds = _fbm(rng, (2, 4), 3)
    mottle = _fbm(rng, (16, 32), 3)
    speckle = _noise(rng, 256, 512)
    pores = _smoothstep(0.88, 0.97, _noise(rng, 256, 512))
    tex = 0.5 + 1.0 * (clouds - 0.5) + 0.6 * (mottle - 0.5) + 0.35 * (speckle - 0.5) + 0.45 * pores
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


_TEXTURES = {"wood": _wood, "marble": _marble, "linen": _linen, "concrete": _concrete}


def _blur_wrapped(tile: np.ndarray, sigma: float) -> np.ndarray:
    pad = int(3 * sigma) + 1
    padded = np.pad(tile, pad, mode="wrap")
    return cv2.GaussianBlur(padded, (0, 0), sigma)[pad:-pad, pad:-pad]


TILE_VARIANTS = 4  # distinct tiles per material; each seed also shifts where on its tile the floor lies


@lru_cache(maxsize=8)
def _tile(material: str, variant: int) -> tuple[np.ndarray, np.ndarray]:
    """A material's texture tile and a blurred copy of it (read-only): a pure function of its arguments,
    kept for the next backdrop of the same material, since it is the costliest part of one."""
    rng = np.random.default_rng([variant, *material.encode()])
    tile = _TEXTURES[material](rng)
    mip = _blur_wrapped(tile, 1.6)
    tile.flags.writeable = mip.flags.writeable = False
    return tile, mip


def _floor_texture(material: str, rng: np.random.Generator, w: int, fh: int) -> np.ndarray:
    """The material seen in perspective on the `fh` floor rows under the horizon: 0..1, shape (fh, w)."""
    tile, mip = _tile(material, int(rng.integers(TILE_VARIANTS)))
    alpha = 0.8  # distance of the vanishing line above the back edge, in floor heights (long lens)
    s0 = alpha * fh
    front = fh + s0
    q = 460.0 / w  # texels per pixel on the nearest row: the same look at every output size
    rows = np.arange(fh, dtype=np.float32) + 0.5
    depth = front / (rows + s0)  # 1 at the front row, (1 + alpha) / alpha at the back edge
    phase_u, phase_v = rng.uniform(0, TILE_U), rng.uniform(0, TILE_V)
    # Texture coordinates, wrapped into the tile here: remap is several times slower outside its source.
    v = np.mod((front * depth - front) * q + phase_v, TILE_V).astype(np.float32)
    map_v = np.ascontiguousarray(np.broadcast_to(v[:, None], (fh, w)))
    map_u = np.multiply.outer(depth * q, np.arange(w, dtype=np.float32) - w / 2 + 0.5)
    map_u += phase_u
    map_u -= np.floor(map_u * (1.0 / TILE_U)) * TILE_U  # np.mod is several times slower
    sharp = cv2.remap(tile, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    soft = cv2.remap(mip, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    # Far rows squeeze several texels into a pixel: fade to the blurred tile there (no moire), and let
    # the texture flatten with distance like a lens focused on the product.
    to_soft = np.clip((q * depth * depth - 1.0) / 1.5, 0.0, 1.0)
    fade = 1.0 - 0.35 * (rows / fh - 1.0) ** 2
    mean = float(tile.mean())
    sharp *= ((1.0 - to_soft) * fade)[:, None]
    soft *= (to_soft * fade)[:, None]
    sharp += soft
    sharp += (mean * (1.0 - fade))[:, None]
    return sharp


# --------------------------------------------------------------------------------------------- render


def _shoulder(x: np.ndarray, knee: float = 225.0) -> np.ndarray:
    """Roll highlights off softly toward 255 instead of clipping them flat."""
    room = 255.0 - knee
    over = np.maximum(x - knee, 0.0)
    return np.minimum(x, knee) + room * (1.0 - np.exp(-over / room))


def render_studio(size: tuple[int, int], prompt: str, product_palette: list[str], seed: int) -> Image.Image:
    """Render the backdrop: RGB, exactly `size` (width, height); same inputs give the same bytes."""
    if len(size) != 2 or not all(isinstance(v, int | np.integer) and 8 <= v <= MAX_SIDE for v in size):
        raise ValueError(f"size {size!r} must be (width, height) with sides in 8..{MAX_SIDE}")
    w, h = int(size[0]), int(size[1])
    spec = parse_prompt(prompt)
    product = _parse_palette(product_palette)
    rng = np.random.default_rng(seed % 2**63)
    light = _light_for(spec.moods, spec.tones, rng)
    horizon = float(rng.uniform(0.62, 0.68) * h)
    material = spec.material if spec.material in MATERIAL_BASE else None

    wall = _nudge(spec.wall or _harmony(product, spec.tones, spec.moods), product, 1.4)
    if spec.floor is not None:
        floor = spec.floor
    elif material is not None:
        # A bare "pastel" or "vivid" is about the colours, not the wood or the stone.
        natural = tuple(t for t in spec.tones if t not in ("pastel", "vivid"))
        floor = _apply_tones(MATERIAL_BASE[material], natural)
    else:
        floor = _floor_from_wall(wall)
    floor = _nudge(floor, product, 1.2)

    # Everything smooth lives on a coarse grid (1/8 scale) and is stretched to full size at the end.
    cw, ch = max(2, -(-w // 8)), max(2, -(-h // 8))
    xs = _coarse_axis(0, w, cw)
    ys_all = _coarse_axis(0, h, ch)
    probe = _light_field(xs, ys_all, w, h, horizon, light)
    on_wall = ys_all < horizon
    gain = light.exposure / float(probe[on_wall].mean() if on_wall.any() else probe.mean())
    tint = np.asarray(light.tint, np.float32) * gain

    img = np.empty((h, w, 3), np.float32)

    def coarse(y0: int, n: int, albedo_rows: Callable[[np.ndarray], np.ndarray], dst: np.ndarray) -> None:
        ys = _coarse_axis(y0, n, max(2, round(ch * n / h)))
        lit = _light_field(xs, ys, w, h, horizon, light)
        small = _shoulder(albedo_rows(ys)[:, None, :] * lit[:, :, None] * tint).astype(np.float32)
        cv2.resize(small, (w, n), dst=dst, interpolation=cv2.INTER_LINEAR)

    wall_c = np.asarray(wall, np.float32)
    floor_c = np.asarray(floor, np.float32)
    if material is None:
        # A paper sweep: the wall darkens a little toward the top, bends through a soft curve into a
        # floor that faces the light, then falls off toward the camera.
        band = 0.08 * h

        def sweep(ys: np.ndarray) -> np.ndarray:
            m = _smoothstep(horizon - band, horizon + band, ys)[:, None]
            up = np.clip(1.0 - ys / horizon, 0.0, 1.0)
            t = np.clip((ys - horizon) / max(1.0, h - horizon), 0.0, 1.0)
            shade = (1.0 - 0.08 * up) * (1.0 - m[:, 0]) + (1.07 - 0.14 * t) * m[:, 0]
            return (wall_c * (1 - m) + floor_c * m) * shade[:, None]

        coarse(0, h, sweep, img)
    else:
        # A tabletop: a crisp back edge, a little shade on the wall just above it, and the surface
        # texture seen in perspective, brightest at the back where the light grazes it.
        edge = min(h - 1, max(1, round(horizon)))
        fh = h - edge

        def wall_rows(ys: np.ndarray) -> np.ndarray:
            up = np.clip(1.0 - ys / edge, 0.0, 1.0)
            ao = 1.0 - 0.14 * np.exp(-np.maximum(edge - ys, 0.0) / (0.03 * h))
            return wall_c * (ao * (1.0 - 0.08 * up))[:, None]

        def floor_rows(colour: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            def rows(ys: np.ndarray) -> np.ndarray:
                t = np.clip((ys - edge) / max(1.0, fh), 0.0, 1.0)
                return colour * (1.06 - 0.16 * t)[:, None]

            return rows

        c0, c1 = (np.asarray(c, np.float32) for c in _material_colours(material, floor))
        tex = _floor_texture(material, rng, w, fh)
        near = np.empty((fh, w, 3), np.float32)
        far = np.empty((fh, w, 3), np.float32)
        coarse(0, edge, wall_rows, img[:edge])
        coarse(edge, fh, floor_rows(c0), near)
        coarse(edge, fh, floor_rows(c1), far)
        cv2.blendLinear(near, far, 1.0 - tex, tex, dst=img[edge:])
        img[edge : edge + 2] *= 1.08  # the back edge of the table catches the light

    # Fine monochrome grain (0..3 levels, centred by the -1.5 below) breaks up the 8-bit steps of the
    # smooth gradients so they never band. A 256 px tile repeated: far cheaper than full-size noise, and
    # its period cannot be seen at this amplitude.
    cell = cv2.cvtColor(rng.integers(0, 4, (256, 256), dtype=np.uint8), cv2.COLOR_GRAY2RGB)
    grain = cv2.repeat(cell, -(-h // 256), -(-w // 256))[:h, :w]
    out = cv2.add(cv2.convertScaleAbs(img, alpha=1.0, beta=-1.5), grain)
    return Image.frombuffer("RGB", (w, h), out, "raw", "RGB", 0, 1)


class StudioBackdrop:
    """The embedded background backend: a procedural studio backdrop, CPU only, no model weights."""

    name = "studio"
    restyles = False

    async def generate(
        self,
        *,
        size: tuple[int, int],
        prompt: str,
        product_palette: list[str],
        seed: int,
        progress: Callable[[float, str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Image.Image:
        """Return an RGB image of `size` to stand the product in front of (in a fraction of a second, so
        it neither reports progress nor looks at `cancelled`)."""
        return await asyncio.to_thread(render_studio, size, prompt, product_palette, seed)
