"""One warm headless Chromium per process, rendering untrusted HTML with no network and no scripts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import tempfile
from pathlib import Path

from PIL import Image
from playwright.async_api import Browser, BrowserContext, CDPSession, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from kernel.errors import AdgraphError, TransientError
from kernel.models import Box

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


AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


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
        # The screenshot first, then the boxes (the page runs no script: they are the same). The other way
        # round, a screenshot after the box queries on a tab just resized waited ~1 s for a frame, every
        # time the size changed (bench/variants.py: 1.15 s renders instead of 0.14 s).
        png = await page.screenshot(
            omit_background=True, type="png", clip={"x": 0, "y": 0, "width": width, "height": height}
        )
        boxes: dict[str, Box] = {}
        for element in await page.query_selector_all("[data-role]"):
            role = await element.get_attribute("data-role")
            bb = await element.bounding_box()
            await element.dispose()
            if role and bb:
                boxes[role] = Box(
                    x=round(bb["x"]), y=round(bb["y"]), w=round(bb["width"]), h=round(bb["height"])
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

    @contextlib.asynccontextmanager
    async def _site(self, files: dict[str, bytes], *, javascript: bool):  # noqa: ANN202
        """A fresh context over `files`, written to a private temporary folder and opened from file:// (the
        way a user opens the downloaded site); every request that is not a file in that folder is refused
        and recorded. Yields (context, folder URL, refused requests)."""
        if self._browser is None or not self._browser.is_connected():
            await self.start()
        assert self._browser is not None
        with tempfile.TemporaryDirectory(prefix="adgraph-site-") as tmp:
            root = await asyncio.to_thread(_write_tree, tmp, files)
            base = root.as_uri() + "/"
            context = await self._browser.new_context(
                java_script_enabled=javascript, service_workers="block", offline=True
            )
            context.set_default_timeout(self.timeout_s * 1000)
            refused: list[str] = []

            async def guard(route):  # noqa: ANN001 - playwright's Route
                url = route.request.url
                if url.startswith(base) and not url.startswith(base + "..") and "/../" not in url:
                    await route.continue_()
                else:
                    refused.append(url)
                    await route.abort("blockedbyclient")

            await context.route("**/*", guard)
            try:
                yield context, base, refused
            finally:
                with contextlib.suppress(PlaywrightError):
                    await context.close()

    async def render_site(
        self, files: dict[str, bytes], pages: list[str], widths: dict[str, int], *, audit: bool = False
    ) -> tuple[dict[str, dict[str, bytes]], dict[str, list[dict]]]:
        """Full-page PNGs of each page at each width (`{"desktop": 1280, "mobile": 390}`) and, with `audit`,
        axe-core's serious and critical violations per page (WCAG 2 A/AA rules and best practices) at the
        widest width, run on the same load right after its screenshot: each page loads once per width.

        Scripts run only when auditing, and then only axe's: the static checks refuse any script of the
        site's own before it gets here. Raises SITE_CHECK_FAILED naming the requests a page made outside
        the site."""
        axe = await self._axe() if audit else None
        shots: dict[str, dict[str, bytes]] = {name: {} for name in pages}
        found: dict[str, list[dict]] = {}
        plan = list(widths.items()) or [("", AUDIT_WIDTH)]
        audit_width = max(width for _, width in plan)
        async with self._site(files, javascript=audit) as (context, base, refused):
            try:
                if axe is not None:  # as an init script axe is compiled once for the context (~40 % faster)
                    await context.add_init_script(script=axe)
                page = await context.new_page()
                cdp = await context.new_cdp_session(page)
                for label, width in plan:
                    await page.set_viewport_size({"width": width, "height": 800 if width > 600 else 844})
                    for name in pages:
                        await asyncio.wait_for(page.goto(base + name, wait_until="load"), self.timeout_s)
                        fonts = page.evaluate("document.fonts.ready.then(() => true)")  # webfonts in
                        await asyncio.wait_for(fonts, self.timeout_s)
                        if label:
                            shots[name][label] = await asyncio.wait_for(
                                _full_page_png(cdp, width), self.timeout_s
                            )
                        if axe is not None and width == audit_width and name not in found:
                            found[name] = await asyncio.wait_for(page.evaluate(_AXE_RUN), self.timeout_s)
            except (PlaywrightError, TimeoutError) as e:
                raise TransientError(f"Chromium failed to render the site: {e}") from e
        if refused:
            raise AdgraphError(
                "SITE_CHECK_FAILED",
                f"the site asked for {len(refused)} files outside it: {', '.join(refused[:5])}",
                check="no_network_requests",
                requests=refused[:20],
            )
        return shots, found

    @staticmethod
    async def _axe() -> str:
        if not AXE_JS.is_file():
            raise AdgraphError(
                "MODEL_UNAVAILABLE",
                f"axe-core is not installed at {AXE_JS}; run `npm ci` (make setup) in the project root",
            )
        return await asyncio.to_thread(AXE_JS.read_text)


AUDIT_WIDTH = 1280

_AXE_RUN = """async () => {
  const r = await axe.run(document, {resultTypes: ["violations"],
    runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}});
  return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
}"""


async def _full_page_png(cdp: CDPSession, width: int) -> bytes:
    """The whole page as PNG. Chromium's fast PNG encoder: ~3x quicker than Playwright's full-page
    screenshot on 2 cores, for files ~12 % larger."""
    metrics = await cdp.send("Page.getLayoutMetrics")
    height = max(1, math.ceil(metrics["cssContentSize"]["height"]))
    shot = await cdp.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "optimizeForSpeed": True,
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    return base64.b64decode(shot["data"])


def _write_tree(folder: str, files: dict[str, bytes]) -> Path:
    root = Path(folder).resolve()
    for rel, data in files.items():
        path = (root / rel).resolve()
        if not path.is_relative_to(root):  # never write outside the folder, whatever a path says
            raise AdgraphError("SITE_CHECK_FAILED", f"site file {rel!r} would lie outside the site")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
