"""One warm headless Chromium per process, rendering untrusted HTML with no network and no scripts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import mimetypes
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from graph.errors import AdgraphError, TransientError
from graph.models import Box

# Flags for a closed network (see shared/reference/offline-models.md): without them Chromium keeps
# trying to reach Google's hosts at start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--disable-quic",
]


SITE_ORIGIN = "https://site.invalid"
"""Where a site is served from inside Chromium: every request to it is answered from memory, every other
request is refused (".invalid" can never resolve, so nothing could leave even without the route)."""
AXE_JS = Path(__file__).resolve().parents[1] / "node_modules" / "axe-core" / "axe.min.js"


class ChromiumRenderer:
    """Renders HTML to transparent PNGs. Start once (`async with`), then share across jobs.

    Pages are pooled so `pages` renders can run at once; each render gets a fresh document.
    """

    def __init__(
        self, executable_path: str = "/usr/bin/chromium", *, pages: int = 2, timeout_s: float = 20.0
    ) -> None:
        self.executable_path = executable_path
        self.timeout_s = timeout_s
        self._n_pages = pages
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._pages: asyncio.Queue[Page] = asyncio.Queue()
        self._start_lock = asyncio.Lock()

    async def __aenter__(self) -> ChromiumRenderer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        async with self._start_lock:
            if self._browser is not None and self._browser.is_connected():
                return
            await self._close_quietly()
            self._pw = await async_playwright().start()
            try:
                self._browser = await self._pw.chromium.launch(
                    executable_path=self.executable_path, headless=True, args=CHROMIUM_ARGS
                )
            except PlaywrightError as e:
                await self._close_quietly()
                raise AdgraphError(
                    "RENDER_FAILED",
                    f"cannot start Chromium at {self.executable_path}: {e.message.splitlines()[0]} "
                    "(install Debian's chromium, or set ADGRAPH_CHROMIUM_PATH)",
                ) from e
            # No scripts, no service workers; every request (there should be none) is refused.
            self._context = await self._browser.new_context(
                java_script_enabled=False, service_workers="block", offline=True, bypass_csp=False
            )
            self._context.set_default_timeout(self.timeout_s * 1000)
            await self._context.route("**/*", lambda route: route.abort("blockedbyclient"))
            self._pages = asyncio.Queue()
            for _ in range(self._n_pages):
                self._pages.put_nowait(await self._context.new_page())

    async def close(self) -> None:
        async with self._start_lock:
            await self._close_quietly()

    async def _close_quietly(self) -> None:
        for closer in (self._context, self._browser):
            if closer is not None:
                with contextlib.suppress(PlaywrightError):
                    await closer.close()
        if self._pw is not None:
            await self._pw.stop()
        self._pw = self._browser = self._context = None

    async def render_layer(self, html: str, size: tuple[int, int]) -> tuple[Image.Image, dict[str, Box]]:
        """Render `html` at `size` to a transparent RGBA image; return it and each `[data-role]` box."""
        if self._browser is None or not self._browser.is_connected():
            await self.start()
        page = await self._pages.get()
        try:
            png, boxes = await asyncio.wait_for(self._render(page, html, size), self.timeout_s)
        except (PlaywrightError, TimeoutError) as e:
            # A wedged tab is replaced; the node's retry policy tries once more.
            page = await self._replace(page)
            raise TransientError(f"Chromium failed to render the text layer: {e}") from e
        finally:
            self._pages.put_nowait(page)
        layer = Image.open(io.BytesIO(png))
        layer.load()
        return layer.convert("RGBA"), boxes

    async def _render(self, page: Page, html: str, size: tuple[int, int]) -> tuple[bytes, dict[str, Box]]:
        width, height = size
        await page.set_viewport_size({"width": width, "height": height})
        await page.set_content(html, wait_until="load")
        boxes: dict[str, Box] = {}
        for element in await page.query_selector_all("[data-role]"):
            role = await element.get_attribute("data-role")
            bb = await element.bounding_box()
            if role and bb:
                boxes[role] = Box(
                    x=round(bb["x"]), y=round(bb["y"]), w=round(bb["width"]), h=round(bb["height"])
                )
        png = await page.screenshot(
            omit_background=True, type="png", clip={"x": 0, "y": 0, "width": width, "height": height}
        )
        return png, boxes

    async def _replace(self, page: Page) -> Page:
        with contextlib.suppress(PlaywrightError):
            await page.close()
        if self._context is None or self._browser is None or not self._browser.is_connected():
            await self.start()
            return await self._pages.get()
        return await self._context.new_page()

    # -- whole sites (the homepage workflow) ----------------------------------------------------------------

    async def _site_context(
        self, files: dict[str, bytes], *, javascript: bool
    ) -> tuple[BrowserContext, list[str]]:
        """A fresh context serving `files` at SITE_ORIGIN; the list collects every refused request."""
        if self._browser is None or not self._browser.is_connected():
            await self.start()
        assert self._browser is not None
        context = await self._browser.new_context(
            java_script_enabled=javascript, service_workers="block", bypass_csp=False
        )
        context.set_default_timeout(self.timeout_s * 1000)
        refused: list[str] = []

        async def serve(route):  # noqa: ANN001 - playwright's Route
            url = route.request.url
            path = unquote(urlsplit(url).path).lstrip("/") if url.startswith(SITE_ORIGIN + "/") else None
            if path is not None and path in files:
                mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
                await route.fulfill(status=200, body=files[path], content_type=mime)
            else:
                refused.append(url)
                await route.abort("blockedbyclient")

        await context.route("**/*", serve)
        return context, refused

    async def screenshot_site(
        self, files: dict[str, bytes], pages: list[str], widths: dict[str, int]
    ) -> dict[str, dict[str, bytes]]:
        """Full-page PNGs of each page at each width (`{"desktop": 1280, "mobile": 390}`), scripts off.

        Raises RENDER_FAILED naming the requests a page made outside the site."""
        context, refused = await self._site_context(files, javascript=False)
        shots: dict[str, dict[str, bytes]] = {}
        try:
            page = await context.new_page()
            for name in pages:
                shots[name] = {}
                for label, width in widths.items():
                    await page.set_viewport_size({"width": width, "height": 800 if width > 600 else 844})
                    await asyncio.wait_for(
                        page.goto(f"{SITE_ORIGIN}/{name}", wait_until="load"), self.timeout_s
                    )
                    shots[name][label] = await page.screenshot(type="png", full_page=True)
        except (PlaywrightError, TimeoutError) as e:
            raise TransientError(f"Chromium failed to render the site: {e}") from e
        finally:
            with contextlib.suppress(PlaywrightError):
                await context.close()
        if refused:
            raise AdgraphError(
                "SITE_CHECK_FAILED",
                f"the site asked for {len(refused)} files outside it: {', '.join(refused[:5])}",
                check="no_network_requests",
                requests=refused[:20],
            )
        return shots

    async def audit_site(self, files: dict[str, bytes], pages: list[str]) -> dict[str, list[dict]]:
        """axe-core's serious and critical violations per page (the site's own scripts never run: it has
        none, and the checks refuse any)."""
        if not AXE_JS.is_file():
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"axe-core is not installed at {AXE_JS}; run `npm ci` (make setup) in the project root",
            )
        axe = AXE_JS.read_text()
        context, _ = await self._site_context(files, javascript=True)
        found: dict[str, list[dict]] = {}
        try:
            page = await context.new_page()
            await page.set_viewport_size({"width": 1280, "height": 800})
            for name in pages:
                await asyncio.wait_for(page.goto(f"{SITE_ORIGIN}/{name}", wait_until="load"), self.timeout_s)
                await page.add_script_tag(content=axe)
                result = await asyncio.wait_for(
                    page.evaluate(
                        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
                        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
                        " nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))"
                    ),
                    self.timeout_s,
                )
                found[name] = result
        except (PlaywrightError, TimeoutError) as e:
            raise TransientError(f"Chromium failed to audit the site: {e}") from e
        finally:
            with contextlib.suppress(PlaywrightError):
                await context.close()
        return found
