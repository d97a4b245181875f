"""The static site checks: a good site passes all of them, and each fails on a site broken its way."""

from __future__ import annotations

import asyncio

import pytest

from agents.site_checks import check_site, site_files
from agents.site_rules import RuleSiteDesigner, RuleSiteDeveloper, RuleSitePlanner
from agents.site_schemas import SiteImage, font_paths
from tests.unit.fakes import FakeKoreanFonts
from tests.unit.site_support import KO, profile

IMAGES = [SiteImage(src=f"images/photo-{i}.png", width=8, height=6) for i in (1, 2, 3)]


async def _build():
    p = profile(KO)
    plan = await RuleSitePlanner().plan(profile=p, images=3, pages=None)
    design = await RuleSiteDesigner(FakeKoreanFonts()).design(profile=p, plan=plan, style=None)
    code = await RuleSiteDeveloper().code(profile=p, plan=plan, design=design, images=IMAGES)
    return p, design, code


@pytest.fixture(scope="module")
def good():
    p, design, code = asyncio.run(_build())
    files = site_files(code, IMAGES, dict.fromkeys(font_paths(design), b""))
    return p, design, files


def failing(results: dict[str, list[str]]) -> set[str]:
    return {name for name, found in results.items() if found}


def test_the_rule_built_site_passes_every_check(good):
    p, design, files = good
    assert failing(check_site(files, p, design)) == set()


def edited(files: dict[str, bytes], path: str, old: str, new: str, count: int = 1) -> dict[str, bytes]:
    text = files[path].decode()
    assert old in text, old
    return {**files, path: text.replace(old, new, count).encode()}


@pytest.mark.parametrize(
    ("path", "old", "new", "check"),
    [
        ("index.html", "</section>", "<div></section>", "html_parses"),
        ("about.html", '<main id="main">', "", "html_parses"),
        ("index.html", "<title>", "<tit>", "html_parses"),
        ("index.html", '<html lang="ko">', "<html>", "html_parses"),
        # what the old generator did: Tailwind from a CDN
        (
            "index.html",
            "</head>",
            '<link rel="stylesheet" href="https://cdn.tailwindcss.com/x.css"></head>',
            "no_external_urls",
        ),
        ("gallery.html", 'src="images/photo-1.png"', 'src="//cdn.example.com/a.png"', "no_external_urls"),
        (
            "assets/site.css",
            ":root{",
            '@import "https://fonts.googleapis.com/css";:root{',
            "no_external_urls",
        ),
        ("index.html", "</body>", "<script>fetch('x')</script></body>", "no_external_urls"),
        (
            "index.html",
            "</head>",
            '<meta http-equiv="refresh" content="0; url=https://evil.example/"></head>',
            "no_external_urls",
        ),
        (
            "index.html",
            'href="about.html"',
            'href="about.html" ping="https://t.example/p"',
            "no_external_urls",
        ),
        # what a browser takes that a loose check would miss
        ("assets/site.css", ":root{", '@import"https://fonts.example/css";:root{', "no_external_urls"),
        (
            "index.html",
            "</head>",
            '<meta http-equiv="refresh" content="0; https://evil.example/"></head>',
            "no_external_urls",
        ),
        (
            "index.html",
            "</head>",
            '<meta http-equiv="refresh" content="1,URL = \'https://evil.example/\'"></head>',
            "no_external_urls",
        ),
        (
            "gallery.html",
            'src="images/photo-1.png"',
            'src="images/photo-1.png" onerror="location=\'https://evil.example\'"',
            "no_external_urls",
        ),
        (
            "index.html",
            "</main>",
            '<iframe srcdoc="&lt;img src=x&gt;" title="x"></iframe></main>',
            "no_external_urls",
        ),
        (
            "contact.html",
            "</main>",
            '<form><button type="submit">go</button></form></main>',
            "no_external_urls",
        ),
        ("index.html", 'href="about.html"', 'href="abuot.html"', "links_resolve"),
        ("index.html", 'href="#main"', 'href="#nowhere"', "links_resolve"),
        ("index.html", 'href="contact.html"', 'href="contact.html#nothing-here"', "links_resolve"),
        ("gallery.html", 'src="images/photo-2.png"', 'src="images/photo-9.png"', "links_resolve"),
        ("index.html", 'href="assets/site.css"', 'href="/assets/site.css"', "links_resolve"),
        ("gallery.html", 'alt="카페 봄 사진 1', 'data-x="', "images_have_alt"),
        ("gallery.html", 'alt="카페 봄 사진 1 — 카페 봄 둘러보기"', 'alt=" "', "images_have_alt"),
    ],
)
def test_each_check_fails_on_a_site_broken_its_way(good, path, old, new, check):
    p, design, files = good
    results = check_site(edited(files, path, old, new), p, design)
    assert check in failing(results), results
    assert all(path in problem or path.endswith(".css") for problem in results[check])


def test_the_store_name_and_phone_must_be_on_the_index_page(good):
    p, design, files = good
    no_phone = edited(files, "index.html", "02-123-4567", "", count=-1)
    assert failing(check_site(no_phone, p, design)) == {"index_identity"}
    no_name = edited(files, "index.html", "카페 봄", "우리 가게", count=-1)
    assert "index_identity" in failing(check_site(no_name, p, design))


def test_the_store_name_and_phone_are_found_whatever_their_spacing(good):
    p, design, files = good
    spaced = p.model_copy(update={"store_name": "카페  봄", "phone_number": " 02-123-4567 "})
    assert failing(check_site(files, spaced, design)) == set()


def test_tel_and_mailto_links_are_fine(good):
    p, design, files = good
    mail = edited(files, "contact.html", "</main>", '<p><a href="mailto:hi@example.com">mail</a></p></main>')
    assert failing(check_site(mail, p, design)) == set()


def test_contrast_below_4_5_fails(good):
    p, design, files = good
    faint = design.model_copy(update={"palette": design.palette.model_copy(update={"muted": "#bbbbbb"})})
    results = check_site(files, p, faint)
    assert failing(results) == {"contrast"}
    assert any("muted on background" in r for r in results["contrast"])
