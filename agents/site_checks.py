"""Checks on a built site, on its files alone (no browser): each returns the problems it found.

They run on every developer's output before it is stored (`code_problems`) and on the finished site in
`render`, next to the browser's axe-core audit; result.json reports each check by name.
"""

from __future__ import annotations

import posixpath
import re
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

from agents.site_schemas import CSS_PATH, MIN_CONTRAST, DesignSystem, Profile, SiteCode, SiteImage
from kernel.color import contrast

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# Elements whose end tag HTML lets you leave out; everything else must be closed.
OPTIONAL_END = {"p", "li", "dt", "dd", "option", "tr", "td", "th", "thead", "tbody", "tfoot", "rt", "rp"}
URL_ATTRS = {
    "href", "src", "action", "formaction", "poster", "data", "cite", "background", "xlink:href",
    "ping", "manifest", "lowsrc", "longdesc", "archive", "codebase", "usemap",
}  # fmt: skip
# A static site needs none of these; each can load or send something the checks cannot follow.
FORBIDDEN = ("script", "iframe", "frame", "object", "embed", "base", "form", "portal")
CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)|@import\s*(['"])(.*?)\3""", re.I)
SAFE_SCHEMES = {"tel", "mailto"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.doctype = False
        self.styles: list[str] = []
        self._in_style = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower().startswith("doctype html")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if a.get("style"):
            self.styles.append(a["style"] or "")
        self._in_style = tag == "style"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        if tag in VOID:
            return
        if tag not in self.stack:
            self.errors.append(f"</{tag}> closes nothing")
            return
        while self.stack:
            top = self.stack.pop()
            if top == tag:
                break
            if top not in OPTIONAL_END:
                self.errors.append(f"<{top}> is not closed before </{tag}>")

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
        else:
            self.text.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _is_external(url: str) -> bool:
    url = url.strip()
    if url.startswith("//") or url.startswith("\\\\"):
        return True
    scheme = urlsplit(url).scheme.lower()
    return bool(scheme) and scheme not in SAFE_SCHEMES


def _urls(page: _Page) -> list[tuple[str, str]]:
    """(attribute, url) of every URL the page refers to, CSS in style attributes and elements included."""
    out: list[tuple[str, str]] = []
    for tag, attrs in page.tags:
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            out.append(("http-equiv=refresh", _refresh_url(attrs.get("content") or "")))
        for name, value in attrs.items():
            if value is None:
                continue
            if name in URL_ATTRS:
                out.append((name, value))
            elif name in ("srcset", "imagesrcset"):
                out += [(name, part.strip().split(" ")[0]) for part in value.split(",") if part.strip()]
    for css in page.styles:
        out += [("style", m.group(2) or m.group(4) or "") for m in CSS_URL.finditer(css)]
    return out


def _refresh_url(content: str) -> str:
    """The URL of `<meta http-equiv=refresh content="5; url=X">`, also as browsers take "5; X" and "5,X"."""
    m = re.match(r"\s*[\d.]*\s*[;,]\s*(.*)", content, re.S)
    if m is None:  # "5": a reload of the page itself
        return ""
    return re.sub(r"^url\s*=\s*", "", m.group(1).strip(), flags=re.I).strip("'\"")


def check_site(
    files: dict[str, bytes], profile: Profile, design: DesignSystem | None = None
) -> dict[str, list[str]]:
    """Run every static check on the site's files; {check name: problems} (empty lists passed)."""
    pages = {
        path: _parse(data.decode("utf-8", "replace"))
        for path, data in files.items()
        if path.endswith(".html")
    }
    results: dict[str, list[str]] = {
        "html_parses": [],
        "no_external_urls": [],
        "links_resolve": [],
        "images_have_alt": [],
        "index_identity": [],
        "contrast": [],
    }
    if "index.html" not in pages:
        results["links_resolve"].append("there is no index.html")
    for path, page in sorted(pages.items()):
        r = results["html_parses"]
        r += [f"{path}: {e}" for e in page.errors]
        r += [f"{path}: <{t}> is not closed" for t in page.stack if t not in OPTIONAL_END | {"html", "body"}]
        if not page.doctype:
            r.append(f"{path}: no <!DOCTYPE html>")
        names = [t for t, _ in page.tags]
        for required in ("html", "head", "title", "body", "main"):
            if required not in names:
                r.append(f"{path}: no <{required}>")
        if "html" in names and not dict(page.tags[names.index("html")][1]).get("lang"):
            r.append(f"{path}: <html> has no lang")
        for tag in FORBIDDEN:
            if tag in names:
                results["no_external_urls"].append(f"{path}: has a <{tag}> (sites are static)")
        for tag, attrs in page.tags:  # an event handler is a script too (and can leave the site)
            for name in attrs:
                if name.startswith("on"):
                    results["no_external_urls"].append(f"{path}: <{tag} {name}=…> (sites are static)")
        for tag, attrs in page.tags:
            if tag == "img" and not (attrs.get("alt") or "").strip():
                results["images_have_alt"].append(f"{path}: <img src={attrs.get('src')!r}> has no alt text")
        for attr, url in _urls(page):
            if _is_external(url):
                results["no_external_urls"].append(f"{path}: {attr}={url!r} leaves the site")
            elif not url.lower().startswith(("tel:", "mailto:")):
                problem = _resolve(path, url, files, pages)
                if problem:
                    results["links_resolve"].append(f"{path}: {attr}={url!r} {problem}")
    for path, data in files.items():
        if path.endswith(".css"):
            for m in CSS_URL.finditer(data.decode("utf-8", "replace")):
                url = m.group(2) or m.group(4) or ""
                if _is_external(url):
                    results["no_external_urls"].append(f"{path}: url({url!r}) leaves the site")
                elif problem := _resolve(path, url, files, pages):
                    results["links_resolve"].append(f"{path}: url({url!r}) {problem}")
    if (index := pages.get("index.html")) is not None:
        text = " ".join(" ".join(index.text).split())
        name, phone = (" ".join((v or "").split()) for v in (profile.store_name, profile.phone_number))
        if name not in text:  # HTML collapses whitespace: so do the needles
            results["index_identity"].append(
                f"the store name {profile.store_name!r} is not on the index page"
            )
        if phone and phone not in text:
            results["index_identity"].append(
                f"the phone number {profile.phone_number!r} is not on the index page"
            )
    if design is not None:
        for name, (fg, bg) in design.palette.text_pairs().items():
            if (c := contrast(fg, bg)) < MIN_CONTRAST:
                results["contrast"].append(f"{name}: {c:.2f} < {MIN_CONTRAST}")
    return results


def _resolve(path: str, url: str, files: dict[str, bytes], pages: dict[str, _Page]) -> str | None:
    """Why `url` (relative to file `path`) does not resolve inside the site, or None if it does."""
    parts = urlsplit(url)
    if parts.scheme == "data":
        return None
    target = unquote(parts.path)
    if target.startswith("/"):
        return "is absolute (use a relative path so the site opens from disk)"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target)) if target else path
    if resolved.startswith("..") or resolved not in files:
        return f"points at {resolved!r}, which is not in the site"
    if parts.fragment and resolved in pages and parts.fragment not in pages[resolved].ids:
        return f"points at #{parts.fragment}, which {resolved} does not have"
    return None


def site_files(
    code: SiteCode, images: list[SiteImage], extra: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    """The site as path → bytes; images and fonts as placeholders when only their paths matter."""
    files = {name: html.encode() for name, html in code.pages.items()}
    files[CSS_PATH] = code.css.encode()
    for image in images:
        files.setdefault(image.src, b"")
    files.update(extra or {})
    return files


def code_problems(
    code: SiteCode,
    *,
    profile: Profile,
    design: DesignSystem,
    images: list[SiteImage],
    pages: list[str],
    extra: dict[str, bytes] | None = None,
) -> list[str]:
    """Rule violations of a developer's output: missing pages, and every static check's findings."""
    out = [f"missing page {p}" for p in pages if p not in code.pages]
    out += [f"unexpected page {p}" for p in code.pages if p not in pages]
    for problems in check_site(site_files(code, images, extra), profile, design).values():
        out += problems
    return out
