"""The fontconfig font catalog: the installed Korean fonts, and widths that match the font files."""

from __future__ import annotations

import subprocess

import pytest
from PIL import ImageFont

from kernel.errors import AdgraphError
from nodes.backends.fonts import FontconfigCatalog, css_weight

pytestmark = pytest.mark.integration  # the system's fontconfig and fonts-nanum (make system)
NANUM = {"NanumGothic", "NanumSquare", "NanumSquareRound", "NanumBarunGothic", "NanumMyeongjo"}


@pytest.fixture(scope="module")
def catalog() -> FontconfigCatalog:
    return FontconfigCatalog()


def test_lists_the_installed_korean_fonts_by_their_latin_names(catalog: FontconfigCatalog) -> None:
    hangul = catalog.families(hangul_only=True)
    assert set(hangul) >= NANUM
    assert all(name.isascii() for name in hangul)  # "NanumSquare", not "나눔스퀘어"
    faces = catalog.faces()
    square = {f.weight: f for f in faces if f.family == "NanumSquare"}
    assert set(square) >= {400, 700}
    assert square[700].file.endswith("NanumSquareB.ttf") and square[700].hangul
    assert not any(f.hangul for f in faces if f.family.startswith(("DejaVu", "Liberation")))
    assert set(catalog.families()) >= set(hangul)


@pytest.mark.parametrize(
    ("fc", "css"),
    [(0, 100), (50, 300), (75, 400), (80, 400), (100, 500), (180, 600), (200, 700), (205, 800), (210, 900)],
)
def test_fontconfig_weights_map_to_css_weights(fc: int, css: int) -> None:
    assert css_weight(fc) == css


def test_faces_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = subprocess.run

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    fresh = FontconfigCatalog()
    assert fresh.faces() == fresh.faces()
    fresh.text_width("가", "NanumGothic", 400, 20)
    assert len(calls) == 1


def test_text_width_is_the_font_files_advance(catalog: FontconfigCatalog) -> None:
    text = "여름 한정 세일 Summer sale"
    bold = catalog.face("NanumSquare", 700)
    expected = ImageFont.truetype(bold.file, 60).getlength(text)
    assert catalog.text_width(text, "NanumSquare", 700, 60) == pytest.approx(expected, abs=1.5)
    assert catalog.text_width(text, "NanumSquare", 700, 120) == pytest.approx(2 * expected, rel=0.02)
    assert catalog.text_width(text, "NanumSquare", 700, 60) > catalog.text_width(text, "NanumSquare", 400, 60)
    assert catalog.text_width("", "NanumSquare", 700, 60) == 0


def test_the_closest_weight_of_a_family_is_measured(catalog: FontconfigCatalog) -> None:
    assert catalog.face("NanumSquare", 800).weight == 700  # no extra bold installed: bold is closest
    assert catalog.face("NanumSquare", 300).weight == 400
    assert catalog.face("DejaVu Sans", 400).style == "Book"  # upright, normal width preferred


def test_resolve_is_forgiving_about_spelling(catalog: FontconfigCatalog) -> None:
    assert catalog.resolve("NanumSquare") == "NanumSquare"
    assert catalog.resolve("nanum square round") == "NanumSquareRound"
    assert catalog.resolve("나눔스퀘어") == "NanumSquare"


def test_an_unknown_family_names_the_installed_ones(catalog: FontconfigCatalog) -> None:
    with pytest.raises(AdgraphError) as err:
        catalog.resolve("Comic Sans MS")
    e = err.value
    assert e.code == "INVALID_INPUT" and e.http_status == 422 and e.details["field"] == "font"
    assert "Comic Sans MS" in e.message and "NanumSquare" in e.message
    assert set(e.details["installed"]) >= NANUM
    with pytest.raises(AdgraphError):
        catalog.text_width("x", "Comic Sans MS", 400, 20)


def test_a_missing_fontconfig_is_a_clear_error() -> None:
    with pytest.raises(AdgraphError) as err:
        FontconfigCatalog(fc_list="no-such-fc-list").faces()
    assert "fontconfig" in err.value.message
