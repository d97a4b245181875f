"""The homepage workflow with real parts: the CLI, Chromium (screenshots, axe-core), the files on disk."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import async_playwright

from graph.state import HOMEPAGE_NODES
from nodes.backends.chromium import CHROMIUM_ARGS
from service.outputs import write_result
from service.running import new_job_id, run_job
from service.wiring import make_homepage_context
from service.workflows import WORKFLOWS
from service.workflows.homepage import HomepageJobInput
from tests.support import ADGRAPH, PHOTOS
from tests.unit.site_support import EN, KO

pytestmark = pytest.mark.integration
SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")  # the warm Chromium of the `env` fixture

BANANA, FISH = PHOTOS / "banana.png", PHOTOS / "dried_fish_plate.png"


def adgraph(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ADGRAPH, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def korean_site(tmp_path_factory) -> tuple[Path, dict, dict[str, str]]:
    """`adgraph homepage` on a Korean profile with two photos, all five pages."""
    import os

    tmp = tmp_path_factory.mktemp("homepage-cli")
    (tmp / "profile.json").write_text(json.dumps(KO, ensure_ascii=False), encoding="utf-8")
    out = tmp / "out"
    env = {**os.environ, "ADGRAPH_DATA_DIR": str(tmp / "data")}
    args = ["--profile", str(tmp / "profile.json"), "--image", str(BANANA), "--image", str(FISH)]
    proc = adgraph("homepage", *args, "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout), env


def test_the_cli_writes_the_site_screens_zip_and_result(korean_site):
    out, doc, _ = korean_site
    assert doc == json.loads((out / "result.json").read_text())
    assert doc["status"] == "succeeded"
    pages = ["index.html", "about.html", "menu.html", "gallery.html", "contact.html"]  # a café gets a menu
    assert doc["pages"] == pages
    assert [n["name"] for n in doc["nodes"]] == list(HOMEPAGE_NODES)
    assert all(n["seconds"] >= 0 for n in doc["nodes"])
    assert doc["agents"] == {
        p: {"agent": "rules", "fallback": False, "reason": None} for p in ("plan", "design", "code")
    }
    assert set(doc["checks"]) >= {
        "html_parses",
        "no_external_urls",
        "links_resolve",
        "images_have_alt",
        "index_identity",
        "contrast",
        "axe",
    }
    assert all(c["passed"] for c in doc["checks"].values())
    for page in pages:
        assert (out / "site" / page).is_file()
        for label, width in (("desktop", 1280), ("mobile", 390)):
            with Image.open(out / "screens" / f"{page[:-5]}-{label}.png") as im:
                assert im.width == width and im.height > 400
    with zipfile.ZipFile(out / "site.zip") as z:
        assert sorted(n for n in z.namelist() if n.endswith(".html")) == sorted(f"site/{p}" for p in pages)
        assert z.read("site/index.html") == (out / "site" / "index.html").read_bytes()
    index = (out / "site" / "index.html").read_text()
    assert KO["store_name"] in index and KO["phone_number"] in index
    assert list((out / "site" / "fonts").glob("*.ttf"))  # the fonts travel with the site


@SESSION_LOOP
async def test_the_site_opens_from_disk_with_no_network(korean_site):
    """Chromium opens site/index.html from file://, every request outside the folder refused: all images
    and fonts load, and the navigation reaches every page."""
    out, doc, _ = korean_site
    site = (out / "site").resolve()
    outside: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = await browser.new_context(java_script_enabled=True, offline=True)

        async def guard(route):
            url = route.request.url
            if url.startswith(site.as_uri() + "/"):
                await route.continue_()
            else:
                outside.append(url)
                await route.abort()

        await context.route("**/*", guard)
        page = await context.new_page()
        await page.goto((site / "index.html").as_uri())
        for target in doc["pages"]:
            await page.click(f'nav a[href="{target}"]')
            await page.wait_for_load_state("load")
            assert page.url.endswith(target)
            broken = await page.evaluate(
                """async () => {
                    const bad = [];
                    for (const img of document.images) {
                        img.loading = "eager";
                        try { await img.decode(); } catch { bad.push(img.src); }
                    }
                    return bad;
                }"""
            )
            assert broken == []
            # fonts load after "load" when they are first used: wait for them, then ask for the site's face
            assert await page.evaluate(
                """async () => {
                    await document.fonts.ready;
                    const name = f => f.family.replace(/["']/g, "");
                    return [...document.fonts].some(
                        f => name(f) === "site-nanumsquareround" && f.status === "loaded");
                }"""
            )
        await browser.close()
    assert outside == []


def test_the_cli_lists_and_branches_a_homepage_job_same_plan_new_design(korean_site, tmp_path):
    out, doc, env = korean_site
    listed = adgraph("jobs", "checkpoints", doc["job_id"], env=env)
    assert listed.returncode == 0, listed.stderr
    assert [c["node"] for c in json.loads(listed.stdout)][-4:] == list(HOMEPAGE_NODES)
    args = ["jobs", "branch", doc["job_id"], "--from-node", "plan", "--style", "classic"]
    proc = adgraph(*args, "--out", str(tmp_path / "b"), env=env)
    assert proc.returncode == 0, proc.stderr
    child = json.loads(proc.stdout)
    assert child["status"] == "succeeded" and child["parent"]["job_id"] == doc["job_id"]
    assert [n["name"] for n in child["nodes"]] == ["design", "code", "render"]
    assert child["pages"] == doc["pages"]
    old, new = (p / "site" / "assets" / "site.css" for p in (out, tmp_path / "b"))
    assert "NanumMyeongjo" in new.read_text() and "NanumMyeongjo" not in old.read_text()
    for page in doc["pages"]:  # same plan: the same headings on every page
        headings = [
            re.findall(r"<h[12]>(.*?)</h[12]>", (p / "site" / page).read_text())
            for p in (out, tmp_path / "b")
        ]
        assert headings[0] == headings[1]
    wrong = adgraph(
        "jobs",
        "branch",
        doc["job_id"],
        "--from-node",
        "plan",
        "--headline",
        "x",
        "--out",
        str(tmp_path / "c"),
        env=env,
    )
    assert wrong.returncode == 2 and json.loads(wrong.stdout)["error"]["code"] == "INVALID_INPUT"


@SESSION_LOOP
async def test_an_english_site_in_process_passes_axe_with_real_chromium(env, tmp_path):
    ctx = make_homepage_context(env.settings, env.ctx.renderer)
    opts = HomepageJobInput.model_validate({"profile": EN, "pages": ["about", "contact"], "style": "modern"})
    photo = ctx.artifacts.put_image_sync(Image.open(BANANA).convert("RGB"))
    graph_input = {"profile": opts.profile, "images": [photo], "pages": opts.pages, "style": opts.style}
    from graph.homepage import build_homepage_graph

    result = await run_job(build_homepage_graph(), ctx, new_job_id(), graph_input, order=HOMEPAGE_NODES)
    assert result.status == "succeeded", result.error and result.error.to_dict()
    doc = write_result(WORKFLOWS["homepage"], result, ctx.artifacts, tmp_path / "out")
    assert doc["pages"] == ["index.html", "about.html", "gallery.html", "contact.html"]
    assert doc["checks"]["axe"] == {"passed": True, "problems": []}
    index = (tmp_path / "out" / "site" / "index.html").read_text()
    assert 'lang="en"' in index and "Blue Door Bakery" in index and "Call us" in index


@SESSION_LOOP
async def test_axe_finds_what_a_careless_site_gets_wrong(env):
    html = (
        '<!DOCTYPE html><html lang="en"><head><title>x</title></head><body><main>'
        '<p style="color:#bbbbbb;background:#ffffff">faint text</p><img src="a.png"></main></body></html>'
    )
    _, found = await env.ctx.renderer.render_site(
        {"index.html": html.encode(), "a.png": BANANA.read_bytes()}, ["index.html"], {}, audit=True
    )
    ids = {v["id"]: v["impact"] for v in found["index.html"]}
    assert ids.get("color-contrast") == "serious" and ids.get("image-alt") == "critical"


@SESSION_LOOP
@pytest.mark.parametrize(
    "url", ["https://cdn.example.com/t.css", "file:///etc/hostname", "../../../../../../etc/hostname"]
)
@pytest.mark.parametrize("audit", [False, True])
async def test_the_renderer_refuses_requests_outside_the_site(env, url, audit):
    from kernel.errors import AdgraphError

    html = (
        '<!DOCTYPE html><html lang="en"><head><title>x</title>'
        f'<link rel="stylesheet" href="{url}"></head><body><img src="{url}" alt="x"></body></html>'
    )
    with pytest.raises(AdgraphError) as e:
        await env.ctx.renderer.render_site(
            {"index.html": html.encode()}, ["index.html"], {"desktop": 1280}, audit=audit
        )
    assert e.value.code == "SITE_CHECK_FAILED" and e.value.details["check"] == "no_network_requests"
    assert e.value.details["requests"][0].endswith(url.rsplit("/", 1)[-1])


@pytest.mark.parametrize(
    ("profile", "extra", "code"),
    [
        ({**KO, "owner_birthday": "1990"}, [], "INVALID_INPUT"),
        (KO, ["--image", str(PHOTOS / "README.md")], "INVALID_IMAGE"),
        (KO, ["--image", "0" * 64], "ARTIFACT_NOT_FOUND"),
    ],
    ids=["unknown-field", "not-an-image", "no-such-artifact"],  # the rest: tests/unit/test_site_agents.py
)
def test_bad_input_is_refused_before_a_job_exists(tmp_path, cli_env, profile, extra, code):
    (tmp_path / "p.json").write_text(json.dumps(profile, ensure_ascii=False))
    proc = adgraph(
        "homepage", "--profile", str(tmp_path / "p.json"), *extra, "--out", str(tmp_path / "o"), env=cli_env
    )
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["error"]["code"] == code
    assert not (tmp_path / "o").exists()
    assert not asyncio.run(_has_checkpoints(Path(cli_env["ADGRAPH_DATA_DIR"]) / "checkpoints.db"))


async def _has_checkpoints(db: Path) -> bool:
    import aiosqlite

    if not await asyncio.to_thread(db.exists):
        return False

    async with aiosqlite.connect(db) as conn:
        try:
            async with conn.execute("SELECT count(*) FROM checkpoints") as cur:
                return (await cur.fetchone())[0] > 0
        except aiosqlite.OperationalError:
            return False
