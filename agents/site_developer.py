"""The rule-based site developer: semantic, responsive HTML and one stylesheet from the plan and the design.

Every piece of user text goes through `html.escape`; images are the site's own files; the pages share one
header (navigation to every page, the current one marked) and one footer (name, address, phone).
"""

from __future__ import annotations

import re
from html import escape
from pathlib import PurePosixPath as Path

from agents.site_schemas import (
    CSS_PATH,
    DesignSystem,
    Profile,
    SiteCode,
    SiteImage,
    SitePage,
    SitePlan,
    SiteSection,
    font_paths,
)

UI = {
    "ko": {
        "skip": "본문 바로가기",
        "nav": "주 메뉴",
        "photo": "{name} 사진 {n}",
        "rights": "All rights reserved.",
    },
    "en": {
        "skip": "Skip to content",
        "nav": "Main menu",
        "photo": "{name} photo {n}",
        "rights": "All rights reserved.",
    },
}


def assign_images(plan: SitePlan, images: list[SiteImage]) -> dict[tuple[str, str], list[SiteImage]]:
    """Images per (page, section): the gallery shows them all; every other page gets its own, in turn,
    so two pages share an image only when there are fewer images than places for them."""
    out: dict[tuple[str, str], list[SiteImage]] = {}
    if not images:
        return out
    cursor = 0
    for page in plan.pages:
        for section in page.sections:
            if section.kind == "gallery":
                out[(page.slug, section.id)] = list(images)
            elif section.images:
                picked = [images[(cursor + i) % len(images)] for i in range(min(section.images, len(images)))]
                cursor += len(picked)
                out[(page.slug, section.id)] = picked
    return out


def _e(text: str) -> str:
    return escape(text, quote=True)


def _tel(phone: str) -> str:
    return "tel:" + "".join(c for c in phone if c.isdigit() or c == "+")


class RuleSiteDeveloper:
    name = "rules"

    async def code(
        self, *, profile: Profile, plan: SitePlan, design: DesignSystem, images: list[SiteImage]
    ) -> SiteCode:
        placed = assign_images(plan, images)
        pages = {page.filename: self._page(page, profile, plan, design, placed) for page in plan.pages}
        return SiteCode(pages=pages, css=stylesheet(design))

    def _page(
        self,
        page: SitePage,
        profile: Profile,
        plan: SitePlan,
        design: DesignSystem,
        placed: dict[tuple[str, str], list[SiteImage]],
    ) -> str:
        ui = UI[plan.language]
        name = _e(profile.store_name)
        title = name if page.slug == "index" else f"{_e(page.title)} | {name}"
        current = ' aria-current="page"'
        nav = "".join(
            f'<li><a href="{p.filename}"{current if p.slug == page.slug else ""}>{_e(p.nav_label)}</a></li>'
            for p in plan.pages
        )
        contact_href = _cta_href(plan, profile)
        if page.slug == "contact" and profile.phone_number:  # on the contact page a button calls
            contact_href = _tel(profile.phone_number)
        sections = "\n".join(
            _section(s, page, profile, design, placed.get((page.slug, s.id), []), contact_href, ui)
            for s in page.sections
        )
        footer_lines = [f'<p class="footer-name">{name}</p>']
        if profile.location:
            footer_lines.append(f"<address>{_e(profile.location)}</address>")
        if profile.phone_number:
            footer_lines.append(
                f'<p><a href="{_e(_tel(profile.phone_number))}">{_e(profile.phone_number)}</a></p>'
            )
        footer_lines.append(f'<p class="small">&copy; {name}. {ui["rights"]}</p>')
        return f"""<!DOCTYPE html>
<html lang="{plan.language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta name="description" content="{_e(plan.tagline)}">
<link rel="stylesheet" href="{CSS_PATH}">
</head>
<body>
<a class="skip" href="#main">{ui["skip"]}</a>
<header class="site-header">
<div class="wrap header-row">
<a class="brand" href="index.html">{name}</a>
<nav aria-label="{ui["nav"]}"><ul>{nav}</ul></nav>
</div>
</header>
<main id="main">
{sections}
</main>
<footer class="site-footer">
<div class="wrap">
{"".join(footer_lines)}
</div>
</footer>
</body>
</html>
"""


def _cta_href(plan: SitePlan, profile: Profile) -> str:
    if any(p.slug == "contact" for p in plan.pages):
        return "contact.html"
    if profile.phone_number:
        return _tel(profile.phone_number)
    return "index.html#contact"


def _img(image: SiteImage, alt: str, *, eager: bool = False) -> str:
    loading = "" if eager else ' loading="lazy"'
    return f'<img src="{image.src}" alt="{_e(alt)}" width="{image.width}" height="{image.height}"{loading}>'


def _section(
    s: SiteSection,
    page: SitePage,
    profile: Profile,
    design: DesignSystem,
    images: list[SiteImage],
    contact_href: str,
    ui: dict[str, str],
) -> str:
    alt = [
        ui["photo"].format(name=profile.store_name, n=i + 1) + f" — {s.heading}" for i in range(len(images))
    ]
    heading_tag = "h1" if s is page.sections[0] else "h2"
    head = f"<{heading_tag}>{_e(s.heading)}</{heading_tag}>"
    body = "".join(f"<p>{_e(par)}</p>" for par in s.body.split("\n") if par.strip())
    button = f'<p><a class="button" href="{_e(contact_href)}">{_e(s.cta)}</a></p>' if s.cta else ""
    if s.kind == "hero":
        figure = f'<div class="hero-media">{_img(images[0], alt[0], eager=True)}</div>' if images else ""
        return (
            f'<section id="{s.id}" class="hero hero-{design.hero}{" has-media" if images else ""}">'
            f'<div class="wrap hero-row"><div class="hero-copy">{head}{body}{button}</div>{figure}</div>'
            "</section>"
        )
    if s.kind == "features":
        items = "".join(f"<li>{_e(i)}</li>" for i in s.items)
        media = "".join(f"<figure>{_img(im, a)}</figure>" for im, a in zip(images, alt, strict=False))
        return (
            f'<section id="{s.id}" class="band features"><div class="wrap">{head}{body}'
            f'<ul class="cards">{items}</ul>{f"<div class=media-row>{media}</div>" if media else ""}'
            f"{button}</div></section>"
        )
    if s.kind == "gallery":
        figures = "".join(
            f"<figure>{_img(im, a)}<figcaption>{_e(a)}</figcaption></figure>"
            for im, a in zip(images, alt, strict=False)
        )
        return (
            f'<section id="{s.id}" class="band gallery"><div class="wrap">{head}{body}'
            f"{f'<div class=grid>{figures}</div>' if figures else ''}{button}</div></section>"
        )
    if s.kind == "contact":
        lines = []
        for item in s.items:
            if profile.phone_number and profile.phone_number in item:
                label, _, number = item.rpartition(profile.phone_number)
                lines.append(
                    f'<li>{_e(label)}<a href="{_e(_tel(profile.phone_number))}">'
                    f"{_e(profile.phone_number)}</a>{_e(number)}</li>"
                )
            else:
                lines.append(f"<li>{_e(item)}</li>")
        return (
            f'<section id="{s.id}" class="band contact"><div class="wrap">{head}{body}'
            f'<ul class="contact-list">{"".join(lines)}</ul>{button}</div></section>'
        )
    media = "".join(
        f'<figure class="side">{_img(im, a)}</figure>' for im, a in zip(images, alt, strict=False)
    )
    kind = "cta-band" if s.kind == "cta" else "text"
    return (
        f'<section id="{s.id}" class="band {kind}{" has-media" if media else ""}">'
        f'<div class="wrap text-row"><div class="text-copy">{head}{body}{button}</div>{media}</div></section>'
    )


def font_faces(design: DesignSystem) -> str:
    """@font-face rules: the embedded files (relative to the stylesheet), else the installed font by name."""
    rules = []
    embedded = font_paths(design)
    for family in dict.fromkeys([design.type.heading_family, design.type.body_family]):
        face = re.compile(
            rf"(?i)^{re.escape(family.replace(' ', ''))}(R|B|EB|L|Regular|Bold|ExtraBold|Light)?$"
        )
        files = {p: f for p, f in embedded.items() if face.match(Path(f).stem)}
        for weight in (400, 700):
            bold = [p for p in files if Path(p).stem.endswith(("B", "Bold"))]
            regular = [p for p in files if p not in bold]
            chosen = (bold if weight == 700 else regular) or list(files)
            src = [f'url("../{p}") format("truetype")' for p in chosen[:1]]
            src.append(f'local("{family}")')
            rules.append(
                f'@font-face{{font-family:"site-{_slug(family)}";font-weight:{weight};font-display:swap;'
                f"src:{','.join(src)};}}"
            )
    return "\n".join(rules)


def _slug(family: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in family)


FALLBACK_STACK = '"Apple SD Gothic Neo","Malgun Gothic","Noto Sans KR",sans-serif'


def stylesheet(design: DesignSystem) -> str:
    p, t, u = design.palette, design.type, design.space_px
    radius = {"pill": "999px", "rounded": f"{max(6, design.radius_px)}px", "square": "2px"}[design.button]
    heading = f'"site-{_slug(t.heading_family)}","{t.heading_family}",{FALLBACK_STACK}'
    body = f'"site-{_slug(t.body_family)}","{t.body_family}",{FALLBACK_STACK}'
    hero_dir = {"split": "row", "banner": "column-reverse", "centered": "column"}[design.hero]
    hero_align = "center" if design.hero == "centered" else "start"
    hero_items = "stretch" if design.hero == "banner" else "center"
    return f"""{font_faces(design)}
:root{{--bg:{p.background};--surface:{p.surface};--text:{p.text};--muted:{p.muted};--primary:{p.primary};
--on-primary:{p.on_primary};--accent:{p.accent};--u:{u}px;--radius:{design.radius_px}px;--max:{design.max_width_px}px}}
*,*::before,*::after{{box-sizing:border-box}}
html{{-webkit-text-size-adjust:100%}}
body{{margin:0;background:var(--bg);color:var(--text);font-family:{body};font-weight:{t.body_weight};
font-size:{t.base_px}px;line-height:{t.line_height};word-break:keep-all;overflow-wrap:anywhere}}
h1,h2,h3{{font-family:{heading};font-weight:{t.heading_weight};line-height:1.25;margin:0 0 calc(var(--u)*2)}}
h1{{font-size:{t.size(4)}px}}h2{{font-size:{t.size(3)}px}}h3{{font-size:{t.size(1)}px}}
p{{margin:0 0 calc(var(--u)*2)}}
a{{color:var(--primary)}}
img{{max-width:100%;height:auto;display:block;border-radius:var(--radius);object-fit:cover}}
figure{{margin:0}}
figcaption{{color:var(--muted);font-size:{t.size(-1)}px;margin-top:var(--u)}}
address{{font-style:normal}}
.wrap{{max-width:var(--max);margin:0 auto;padding:0 calc(var(--u)*3)}}
.skip{{position:absolute;left:-9999px;top:0;background:var(--surface);color:var(--text);padding:var(--u)}}
.skip:focus{{left:var(--u)}}
.site-header{{background:var(--surface);border-bottom:3px solid var(--accent)}}
.header-row{{display:flex;align-items:center;justify-content:space-between;gap:calc(var(--u)*2);
padding-top:calc(var(--u)*2);padding-bottom:calc(var(--u)*2);flex-wrap:wrap}}
.brand{{font-family:{heading};font-weight:{t.heading_weight};font-size:{t.size(2)}px;color:var(--text);
text-decoration:none}}
nav ul{{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;
gap:calc(var(--u)*0.5) calc(var(--u)*2.5)}}
nav a{{color:var(--text);text-decoration:none;padding:var(--u) 0;display:inline-block;
border-bottom:2px solid transparent}}
nav a[aria-current="page"]{{color:var(--primary);border-bottom-color:var(--primary)}}
nav a:hover,nav a:focus{{color:var(--primary)}}
.hero{{padding:calc(var(--u)*8) 0}}
.hero-row{{display:flex;flex-direction:{hero_dir};align-items:{hero_items};gap:calc(var(--u)*5);
text-align:{hero_align}}}
.hero-copy{{flex:1 1 0}}
.hero-copy p{{font-size:{t.size(1)}px;color:var(--muted)}}
.hero-media{{flex:1 1 0;width:100%}}
.hero-media img{{width:100%;max-height:520px;object-fit:contain;background:var(--surface)}}
.button{{display:inline-block;background:var(--primary);color:var(--on-primary);text-decoration:none;
padding:calc(var(--u)*1.5) calc(var(--u)*3);border-radius:{radius};font-weight:700;min-height:44px}}
.button:hover,.button:focus{{filter:brightness(0.92)}}
.band{{padding:calc(var(--u)*7) 0}}
.band:nth-of-type(even){{background:var(--surface)}}
.cards{{list-style:none;padding:0;margin:0 0 calc(var(--u)*3);display:grid;
grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:calc(var(--u)*2)}}
.cards li{{background:var(--bg);border:1px solid var(--accent);border-radius:var(--radius);
padding:calc(var(--u)*3);font-weight:700}}
.media-row,.grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:calc(var(--u)*3)}}
.grid img{{width:100%;aspect-ratio:4/3}}
.text-row{{display:flex;gap:calc(var(--u)*5);align-items:center}}
.text-copy{{flex:1 1 0}}
.side{{flex:1 1 0}}
.contact-list{{list-style:none;padding:0;margin:0 0 calc(var(--u)*3);font-size:{t.size(1)}px}}
.contact-list li{{padding:var(--u) 0;border-bottom:1px solid var(--accent)}}
.site-footer{{background:var(--surface);padding:calc(var(--u)*5) 0;border-top:3px solid var(--accent)}}
.site-footer p,.site-footer address{{margin:0 0 var(--u)}}
.footer-name{{font-family:{heading};font-weight:{t.heading_weight};font-size:{t.size(1)}px}}
.small{{font-size:{t.size(-1)}px;color:var(--muted)}}
@media (max-width:720px){{
h1{{font-size:{t.size(3)}px}}h2{{font-size:{t.size(2)}px}}
.hero{{padding:calc(var(--u)*5) 0}}
.hero-row,.text-row{{flex-direction:column;align-items:stretch;text-align:start}}
.band{{padding:calc(var(--u)*5) 0}}
.wrap{{padding:0 calc(var(--u)*2)}}
}}
"""
