"""Fakes for the tools that need a model, a browser or system fonts, behind the same protocols as the real
ones."""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kernel.errors import AdgraphError
from kernel.models import Box, FontFace
from kernel.script import is_hangul


class FakeSegmenter:
    """Everything that differs from the photo's border colour is product."""

    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    async def segment(self, photo: Image.Image) -> Image.Image:
        self.calls += 1
        px = np.asarray(photo.convert("RGB"), np.int16)
        border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
        bg = np.median(border, axis=0)
        mask = np.abs(px - bg).sum(axis=2) > 40
        return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L")


class FakeRenderer:
    """Draws a bar whose shade depends on the HTML; reports the text boxes it is given (Chromium reports
    where each `data-role` block landed), none by default; fails its first `fail_times` renders on demand,
    with `failure` (RENDER_FAILED unless told otherwise)."""

    def __init__(
        self,
        fail_times: int = 0,
        *,
        failure: Callable[[], Exception] | None = None,
        boxes: dict[str, Box] | None = None,
    ) -> None:
        self.calls = 0
        self.fail_times = fail_times
        self.failure = failure or (lambda: AdgraphError("RENDER_FAILED", "injected failure"))
        self.boxes = dict(boxes or {})

    async def render_layer(self, html: str, size: tuple[int, int]) -> tuple[Image.Image, dict[str, Box]]:
        self.calls += 1
        if self.fail_times > 0:
            self.fail_times -= 1
            raise self.failure()
        layer = Image.new("RGBA", size, (0, 0, 0, 0))
        shade = hashlib.sha256(html.encode()).digest()[0]  # different HTML, visibly different layer
        ImageDraw.Draw(layer).rectangle((10, 10, 60, 30), fill=(shade, 0, 0, 255))
        return layer, dict(self.boxes)


class FakeFonts:
    """A font catalog with made-up metrics: Hangul 1 em, Latin 0.55 em, space 0.3 em; bold 6 % wider."""

    def __init__(self) -> None:
        self.calls = 0

    def faces(self) -> list[FontFace]:
        return [
            FontFace(family="FakeSans", style="Regular", weight=400, file="/fake/sans.ttf", hangul=True),
            FontFace(family="FakeSans", style="Bold", weight=700, file="/fake/sans-b.ttf", hangul=True),
            FontFace(family="FakeRound", style="Bold", weight=800, file="/fake/round-eb.ttf", hangul=True),
            FontFace(family="LatinOnly", style="Regular", weight=400, file="/fake/latin.ttf", hangul=False),
        ]

    def families(self, *, hangul_only: bool = False) -> list[str]:
        return sorted({f.family for f in self.faces() if f.hangul or not hangul_only})

    def text_width(self, text: str, family: str, weight: int, size: int) -> float:
        self.calls += 1
        em = sum(1.0 if is_hangul(ch) else 0.3 if ch == " " else 0.55 for ch in text)
        return em * size * (1.06 if weight >= 700 else 1.0)


# Debian's fonts-nanum as fontconfig lists it (family, style, CSS weight, file, bytes), and one Latin family.
_NANUM = [
    ("NanumBarunGothic", "Regular", 400, "NanumBarunGothic.ttf", 4186060),
    ("NanumBarunGothic", "Bold", 700, "NanumBarunGothicBold.ttf", 4415956),
    ("NanumGothic", "Regular", 400, "NanumGothic.ttf", 4691820),
    ("NanumGothic", "Bold", 700, "NanumGothicBold.ttf", 4642244),
    ("NanumGothicCoding", "Regular", 400, "NanumGothicCoding.ttf", 2315924),
    ("NanumGothicCoding", "Bold", 700, "NanumGothicCodingBold.ttf", 2246240),
    ("NanumMyeongjo", "Regular", 400, "NanumMyeongjo.ttf", 3839464),
    ("NanumMyeongjo", "Bold", 700, "NanumMyeongjoBold.ttf", 4183592),
    ("NanumSquare", "Regular", 400, "NanumSquareR.ttf", 723640),
    ("NanumSquare", "Bold", 700, "NanumSquareB.ttf", 733500),
    ("NanumSquareRound", "Regular", 400, "NanumSquareRoundR.ttf", 1063276),
    ("NanumSquareRound", "Bold", 700, "NanumSquareRoundB.ttf", 1030948),
]
_LATIN = [
    ("DejaVu Sans", "Book", 400, "DejaVuSans.ttf", 759720),
    ("DejaVu Sans", "Bold", 700, "DejaVuSans-Bold.ttf", 708920),
]


@functools.cache
def _placeholder_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="adgraph-fake-fonts-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


class FakeKoreanFonts(FakeFonts):
    """The installed fonts as the homepage's designer sees them on a machine with fonts-nanum, without them:
    the same families, weights and file names, each file a placeholder of the real size (sparse, never
    parsed: the fake renderers draw no text), and FakeFonts' made-up metrics."""

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.folder = folder or _placeholder_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        for *_, name, size in _NANUM + _LATIN:
            path = self.folder / name
            if not path.exists() or path.stat().st_size != size:
                with path.open("wb") as f:
                    f.truncate(size)
        self._faces = [
            FontFace(family=family, style=style, weight=weight, file=str(self.folder / name), hangul=hangul)
            for hangul, table in ((True, _NANUM), (False, _LATIN))
            for family, style, weight, name, _ in table
        ]

    def faces(self) -> list[FontFace]:
        return list(self._faces)
