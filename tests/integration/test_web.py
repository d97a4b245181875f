"""The web studio in a real Chromium (Playwright's async API, Debian's /usr/bin/chromium) against the real
app under uvicorn on loopback: login with a key kept in sessionStorage, a wrong key, an ad made from the
form and watched to the end over SSE, a reload mid-job without duplicate timeline rows, the history, and
a phone-width page with no horizontal scroll. Every request that leaves the server is aborted and counted."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from service.settings import Settings
from tests.integration.api_support import Faults, LiveServer
from tests.support import PHOTOS

pytestmark = pytest.mark.integration

ADGRAPH = str(Path(sys.executable).with_name("adgraph"))
SHOTS = Path(os.environ.get("ADGRAPH_SHOTS", "/tmp/notes/shots"))
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
BANANA = PHOTOS / "banana.png"


def make_key(data_dir: Path, tenant: str) -> str:
    env = {**os.environ, "ADGRAPH_DATA_DIR": str(data_dir)}
    env.pop("ADGRAPH_DATABASE_URL", None)
    made = subprocess.run(
        [ADGRAPH, "keys", "create", "--tenant", tenant], env=env, capture_output=True, text=True, timeout=120
    )
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout)["key"]


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[LiveServer, str]]:
    data_dir = tmp_path_factory.mktemp("web")
    SHOTS.mkdir(parents=True, exist_ok=True)
    key = make_key(data_dir, "shop-web")
    settings = Settings(data_dir=data_dir, database_url=None, checkpoint_url=None, max_concurrent_jobs=1)
    server = LiveServer(settings, Faults())
    server.start()
    try:
        yield server, key
    finally:
        server.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield b
        await b.close()


class Offline:
    """Routes every request not to our server to abort, and records it."""

    def __init__(self, base: str) -> None:
        self.base, self.escaped = base, []

    async def __call__(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.base) or url.startswith(("blob:", "data:")):
            await route.continue_()
        else:
            self.escaped.append(url)
            await route.abort()


async def page_for(browser: Browser, base: str, **kw: Any) -> tuple[Page, Offline]:
    ctx = await browser.new_context(locale="ko-KR", **kw)
    off = Offline(base)
    await ctx.route("**/*", off)
    page = await ctx.new_page()
    return page, off


async def login(page: Page, base: str, key: str) -> None:
    await page.goto(base + "/")
    await page.get_by_label("API 키").fill(key)
    await page.get_by_role("button", name="들어가기").click()
    await expect(page.locator("#new")).to_be_visible()


async def axe_serious(page: Page) -> list[str]:
    # through the devtools protocol, not a <script> tag: our CSP refuses inline scripts, as it should
    await page.evaluate(AXE.read_text() + "\n;window.axe = axe; 0")
    found = await page.evaluate("async () => (await axe.run()).violations.map(v => [v.impact, v.id])")
    return [f"{impact}:{rule}" for impact, rule in found if impact in ("serious", "critical")]


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.asyncio(loop_scope="module")
async def test_wrong_key_gets_the_login_prompt(live, browser) -> None:
    server, key = live
    page, off = await page_for(browser, server.base_url)
    await page.goto(server.base_url + "/")
    await expect(page.get_by_role("heading", name="API 키 입력")).to_be_visible()
    await page.get_by_label("API 키").fill(key[:-1] + "Z")
    await page.get_by_role("button", name="들어가기").click()
    await expect(page.get_by_role("alert").first).to_have_text("키가 거부되었습니다.")
    assert await page.evaluate("sessionStorage.getItem('key')") is None  # a refused key is not kept
    await shot(page, "01-login-wrong-key")
    assert await axe_serious(page) == []
    assert off.escaped == []
    await page.context.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_make_an_ad_watch_it_finish_reload_and_find_it_in_history(live, browser) -> None:
    server, key = live
    page, off = await page_for(browser, server.base_url, viewport={"width": 1280, "height": 900})
    await login(page, server.base_url, key)
    # the key lives in sessionStorage, never in a cookie
    assert await page.evaluate("sessionStorage.getItem('key')") == key
    assert await page.context.cookies() == []
    await page.get_by_role("button", name="광고 만들기 (Ctrl+Enter)").click()
    await expect(page.locator("#form-error")).to_have_text("먼저 사진을 고르세요.")
    assert await axe_serious(page) == []
    await shot(page, "02-form-error")

    await page.locator("#drop").drop({"files": [str(BANANA)]})  # drag and drop
    await expect(page.locator("#thumb")).to_have_attribute("alt", "banana.png")
    await expect(page.locator("#form-error")).to_have_text("")
    await page.locator("#photo").set_input_files(str(BANANA))  # and the picker
    await expect(page.locator("#thumb")).to_be_visible()
    await page.get_by_label("헤드라인").fill("달콤한 바나나")
    await expect(page.locator("#headline-count")).to_have_text("7/120")
    await page.get_by_role("button", name="대리석").click()
    await page.locator("#size").select_option("1200x628")
    await shot(page, "03-form-filled")
    with server.faults.gate.closed() as gate:  # the job waits inside `background` until the gate opens
        await page.get_by_label("헤드라인").press("Control+Enter")
        await expect(page.locator("#job")).to_be_visible()
        assert await asyncio.to_thread(gate.entered.wait, 60), "the job never reached background"
        await expect(page.locator('#timeline li[data-node="segment"]')).to_contain_text("✓")
        await expect(page.locator("#job-status")).to_have_text("running")
        assert "%" in await page.title()
        assert await axe_serious(page) == []
        await shot(page, "04a-job-running")
        await page.reload()  # mid-job: the timeline is rebuilt from the stream, never doubled
        await expect(page.locator('#timeline li[data-node="segment"]')).to_have_count(1)
        await expect(page.locator('#timeline li[data-node="background"]')).to_have_count(1)
    await expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    await expect(page.locator("#timeline")).to_have_attribute("data-closed", "true")
    names = await page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.node)")
    assert len(names) == len(set(names)) and "render" in names, names
    await expect(page.locator("#result-img")).to_be_visible()
    size = await page.locator("#result-img").evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert size == [1200, 628]
    assert not (await page.title()).endswith("%")
    assert await axe_serious(page) == []
    await shot(page, "04-job-finished")

    await page.get_by_role("link", name="기록").click()
    await expect(page.locator("#history-list li")).to_have_count(1)
    await expect(page.locator("#history-list li").first).to_contain_text("succeeded")
    await page.locator("#filter-status").select_option("failed")
    await expect(page.locator("#history-list li")).to_have_count(0)
    await page.locator("#filter-status").select_option("")
    await expect(page.locator("#history-list li")).to_have_count(1)
    await page.locator("#filter-workflow").select_option("homepage")
    await expect(page.locator("#history-list li")).to_have_count(0)
    await page.locator("#filter-workflow").select_option("ad")
    await expect(page.locator("#history-list li img.thumb")).to_have_count(1)
    await expect(page.locator("#history-list li img.thumb")).to_have_js_property("complete", True)
    assert await axe_serious(page) == []
    await shot(page, "05-history")
    assert off.escaped == []
    await page.context.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_phone_width_has_no_horizontal_scroll(live, browser) -> None:
    server, key = live
    page, off = await page_for(
        browser, server.base_url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    await login(page, server.base_url, key)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    await expect(page.get_by_role("button", name="광고 만들기 (Ctrl+Enter)")).to_be_in_viewport()
    await page.get_by_role("button", name="EN", exact=True).click()
    await expect(page.get_by_role("button", name="Make the ad (Ctrl+Enter)")).to_be_visible()
    await shot(page, "06-phone-en")
    assert off.escaped == []
    await page.context.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_cancel_then_resume_from_the_job_page(live, browser) -> None:
    server, key = live
    page, off = await page_for(browser, server.base_url)
    await login(page, server.base_url, key)
    await page.locator("#photo").set_input_files(str(BANANA))
    await page.get_by_label("헤드라인").fill("취소 후 재개")
    with server.faults.gate.closed() as gate:
        await page.get_by_role("button", name="광고 만들기 (Ctrl+Enter)").click()
        assert await asyncio.to_thread(gate.entered.wait, 60), "the job never reached background"
        await expect(page.locator("#job-status")).to_have_text("running")
        await page.get_by_role("button", name="취소").click()
    await expect(page.locator("#job-status")).to_have_text("cancelled", timeout=60_000)
    await expect(page.locator("#timeline")).to_have_attribute("data-closed", "true")
    await page.get_by_role("button", name="이어서 실행").click()
    await expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    names = await page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.node)")
    assert len(names) == len(set(names)) and "render" in names, names
    assert off.escaped == []
    await page.context.close()
