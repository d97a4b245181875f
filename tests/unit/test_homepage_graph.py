"""The homepage graph with the rule agents and a fake renderer: checkpoints, branches, fallbacks, failures."""

from __future__ import annotations

import dataclasses
import io
import json
import types
import zipfile

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from PIL import Image

from agents.provenance import report_fallback
from agents.site_rules import RuleSitePlanner
from agents.site_schemas import SiteCode
from checkpoints.history import find_snapshot, seed_branch, thread_config
from checkpoints.saver import serializer
from graph.homepage import HOMEPAGE_INPUT_CONSUMERS, build_homepage_graph
from graph.state import HOMEPAGE_NODES
from kernel.errors import AdgraphError
from service.jobs import branch_input
from service.outputs import write_result
from service.running import run_job
from service.workflows import WORKFLOWS, state_types
from tests.unit.site_support import EN, KO, FakeSiteRenderer, profile, site_context, tiny_png

HOMEPAGE = WORKFLOWS["homepage"]


def tools(ctx):
    """What checking a branch's input needs: the context's artifact store (and fonts, unused here)."""
    return types.SimpleNamespace(artifacts=ctx.artifacts, resolve_font=lambda family: family)


class CountingPlanner(RuleSitePlanner):
    def __init__(self) -> None:
        self.calls = 0

    async def plan(self, **kw):
        self.calls += 1
        return await super().plan(**kw)


class GivingUpDeveloper:
    """Stands in for an LLM developer whose answer was unusable: reports the fallback, uses the rules."""

    name = "llm"

    async def code(self, **kw):
        from agents.site_rules import RuleSiteDeveloper

        report_fallback(agent="developer", part="code", reason="the answer linked a CDN")
        return await RuleSiteDeveloper().code(**kw)


class CdnDeveloper:
    name = "rules"

    async def code(self, **kw):
        from agents.site_rules import RuleSiteDeveloper

        code = await RuleSiteDeveloper().code(**kw)
        pages = {
            n: h.replace("</head>", '<script src="https://cdn.tailwindcss.com"></script></head>')
            for n, h in code.pages.items()
        }
        return SiteCode(pages=pages, css=code.css)


def inputs(ctx, data=KO, n_images=3, **kw):
    images = [
        ctx.artifacts.put_bytes_sync(tiny_png(10 + i, 8), "image/png", 10 + i, 8) for i in range(n_images)
    ]
    return {"profile": profile(data), "images": images, "pages": None, "style": None, **kw}


async def test_a_site_job_writes_small_checkpoints_and_every_screenshot(tmp_path):
    renderer = FakeSiteRenderer()
    ctx = site_context(tmp_path, renderer)
    saver = InMemorySaver()
    graph = build_homepage_graph(saver)
    result = await run_job(graph, ctx, "j1", inputs(ctx, EN, pages=["about"]), order=HOMEPAGE_NODES)
    assert result.status == "succeeded", result.error
    assert [n["name"] for n in result.nodes] == list(HOMEPAGE_NODES)
    v = result.values
    assert v["site"].pages == ["index.html", "about.html", "gallery.html"]
    assert sorted(v["screens"]) == sorted(
        f"{p}-{w}" for p in ("index", "about", "gallery") for w in ("desktop", "mobile")
    )
    assert {k: p.agent for k, p in v["provenance"].items()} == {
        "plan": "rules",
        "design": "rules",
        "code": "rules",
    }
    assert v["checks"].passed and "axe" in v["checks"].results
    with zipfile.ZipFile(io.BytesIO(ctx.artifacts.path(v["site_zip"]).read_bytes())) as z:
        names = z.namelist()
    assert {"site/index.html", "site/about.html", "site/gallery.html", "site/assets/site.css"} <= set(names)
    assert sum(n.startswith("site/images/") for n in names) == 3
    # state holds references, never the HTML: every checkpoint stays small
    for snap in [s async for s in graph.aget_state_history(thread_config("j1"))]:
        size = len(serializer(state_types()).dumps_typed(snap.values)[1])
        assert size < 16_000, size


async def test_branch_from_plan_with_a_new_style_changes_the_design_not_the_plan(tmp_path):
    planner = CountingPlanner()
    ctx = site_context(tmp_path, planner=planner)
    graph = build_homepage_graph(InMemorySaver())
    first = await run_job(graph, ctx, "a", inputs(ctx), order=HOMEPAGE_NODES)
    assert first.status == "succeeded" and first.values["design"].style == "warm"
    source = await find_snapshot(graph, "a", HOMEPAGE_NODES, node="plan")
    new_input, overrides = branch_input(HOMEPAGE, source, {"style": "modern"}, tools(ctx))
    assert overrides == {"style": "modern"} and new_input.style == "modern"
    cfg = await seed_branch(graph, source, "b", HOMEPAGE_NODES, overrides, HOMEPAGE_INPUT_CONSUMERS, {})
    second = await run_job(graph, ctx, "b", None, config=cfg, order=HOMEPAGE_NODES)
    assert second.status == "succeeded", second.error
    assert [n["name"] for n in second.nodes] == ["design", "code", "render"]
    assert planner.calls == 1
    assert second.values["plan"] == first.values["plan"]
    assert second.values["design"].style == "modern"
    assert second.values["design"].palette != first.values["design"].palette
    assert second.values["site"].files["index.html"] != first.values["site"].files["index.html"]


async def test_changing_the_pages_after_plan_ran_is_refused_naming_where_to_branch(tmp_path):
    ctx = site_context(tmp_path)
    graph = build_homepage_graph(InMemorySaver())
    await run_job(graph, ctx, "a", inputs(ctx), order=HOMEPAGE_NODES)
    source = await find_snapshot(graph, "a", HOMEPAGE_NODES, node="plan")
    _, overrides = branch_input(HOMEPAGE, source, {"pages": ["contact"]}, tools(ctx))
    with pytest.raises(AdgraphError, match="start a new job") as e:
        await seed_branch(graph, source, "b", HOMEPAGE_NODES, overrides, HOMEPAGE_INPUT_CONSUMERS, {})
    assert e.value.code == "INVALID_INPUT"


async def test_a_fallback_is_in_the_provenance_and_the_events(tmp_path):
    ctx = site_context(tmp_path, developer=GivingUpDeveloper())
    graph = build_homepage_graph(InMemorySaver())
    result = await run_job(graph, ctx, "f", inputs(ctx), order=HOMEPAGE_NODES)
    assert result.status == "succeeded", result.error
    code = result.values["provenance"]["code"]
    assert code.agent == "llm" and code.fallback and "CDN" in code.reason
    assert not result.values["provenance"]["plan"].fallback
    fallbacks = [e for e in result.events if e.get("type") == "fallback"]
    assert fallbacks and fallbacks[0]["node"] == "code" and fallbacks[0]["part"] == "code"


async def test_a_developer_that_links_a_cdn_fails_the_job_with_site_check_failed(tmp_path):
    ctx = site_context(tmp_path, developer=CdnDeveloper())
    graph = build_homepage_graph(InMemorySaver())
    result = await run_job(graph, ctx, "c", inputs(ctx), order=HOMEPAGE_NODES)
    assert result.status == "failed"
    assert result.error.code == "SITE_CHECK_FAILED" and "cdn.tailwindcss.com" in result.error.message
    assert "site" not in result.values and "plan" in result.values  # resumable from `design`


async def test_serious_accessibility_violations_fail_the_job(tmp_path):
    bad = {"index.html": [{"id": "color-contrast", "impact": "serious", "help": "contrast", "nodes": ["h1"]}]}
    ctx = site_context(tmp_path, FakeSiteRenderer(violations=bad))
    graph = build_homepage_graph(InMemorySaver())
    result = await run_job(graph, ctx, "x", inputs(ctx), order=HOMEPAGE_NODES)
    assert result.status == "failed" and result.error.code == "SITE_CHECK_FAILED"
    assert result.error.details["checks"]["axe"][0].startswith("index.html: serious color-contrast")
    no_audit = dataclasses.replace(ctx, audit=False)
    resumed = await run_job(graph, no_audit, "x", None, order=HOMEPAGE_NODES)
    assert resumed.status == "succeeded" and [n["name"] for n in resumed.nodes] == ["render"]


async def test_render_refuses_to_load_a_site_whose_files_break_the_rules(tmp_path):
    renderer = FakeSiteRenderer()
    ctx = site_context(tmp_path, renderer)
    graph = build_homepage_graph(InMemorySaver())
    await run_job(graph, ctx, "a", inputs(ctx), order=HOMEPAGE_NODES)
    source = await find_snapshot(graph, "a", HOMEPAGE_NODES, node="code")
    files = source.values["site"].files
    html = await ctx.artifacts.read_bytes(files["index.html"])
    tracker = html.replace(b"</body>", b'<img src="https://t.example/p.gif"></body>')
    site = source.values["site"].model_copy(
        update={"files": {**files, "index.html": await ctx.artifacts.put_bytes(tracker, "text/html")}}
    )
    cfg = await seed_branch(graph, source, "b", HOMEPAGE_NODES, {"site": site}, HOMEPAGE_INPUT_CONSUMERS, {})
    renderer.screenshots.clear()
    result = await run_job(graph, ctx, "b", None, config=cfg, order=HOMEPAGE_NODES)
    assert result.status == "failed" and result.error.code == "SITE_CHECK_FAILED"
    assert set(result.error.details["checks"]) == {"no_external_urls", "images_have_alt"}
    assert renderer.screenshots == []  # Chromium never saw it


async def test_big_photos_are_scaled_for_the_web_and_small_ones_kept(tmp_path):
    ctx = site_context(tmp_path)
    big = ctx.artifacts.put_image_sync(Image.new("RGB", (2400, 1200), (10, 120, 200)))
    clear = ctx.artifacts.put_image_sync(Image.new("RGBA", (1700, 1700), (0, 0, 0, 0)))
    small = ctx.artifacts.put_bytes_sync(tiny_png(20, 10), "image/png", 20, 10)
    graph = build_homepage_graph(InMemorySaver())
    job = {**inputs(ctx, n_images=0), "images": [big, clear, small]}
    result = await run_job(graph, ctx, "w", job, order=HOMEPAGE_NODES)
    assert result.status == "succeeded", result.error
    files = result.values["site"].files
    assert (files["images/photo-1.jpg"].width, files["images/photo-1.jpg"].height) == (1600, 800)
    assert files["images/photo-1.jpg"].bytes < big.bytes
    assert (files["images/photo-2.png"].mime, files["images/photo-2.png"].width) == ("image/png", 1600)
    assert files["images/photo-3.png"] == small
    index = (await ctx.artifacts.read_bytes(files["index.html"])).decode()
    assert 'src="images/photo-1.jpg" alt=' in index and 'width="1600" height="800"' in index


async def test_result_json_of_a_failed_job_names_the_failed_check_and_leaves_no_site(tmp_path):
    bad = {"gallery.html": [{"id": "image-alt", "impact": "critical", "help": "alt text", "nodes": ["img"]}]}
    ctx = site_context(tmp_path, FakeSiteRenderer(violations=bad))
    graph = build_homepage_graph(InMemorySaver())
    ok = await run_job(graph, site_context(tmp_path), "ok", inputs(ctx), order=HOMEPAGE_NODES)
    out = tmp_path / "out"
    write_result(HOMEPAGE, ok, ctx.artifacts, out)
    assert (out / "site" / "index.html").is_file() and (out / "site.zip").is_file()
    failed = await run_job(graph, ctx, "bad", inputs(ctx), order=HOMEPAGE_NODES)
    doc = write_result(HOMEPAGE, failed, ctx.artifacts, out)  # the same folder: nothing stale is left
    assert doc == json.loads((out / "result.json").read_text())
    assert doc["status"] == "failed" and doc["error"]["code"] == "SITE_CHECK_FAILED"
    assert doc["checks"] == {"axe": {"passed": False, "problems": [doc["checks"]["axe"]["problems"][0]]}}
    assert doc["checks"]["axe"]["problems"][0].startswith("gallery.html: critical image-alt")
    assert doc["pages"] == ["index.html", "about.html", "menu.html", "gallery.html", "contact.html"]
    assert [n["name"] for n in doc["nodes"]] == list(HOMEPAGE_NODES) and doc["nodes"][-1][
        "status"
    ] == "failed"
    assert set(doc["agents"]) == {"plan", "design", "code"}
    assert not (out / "site").exists() and not (out / "site.zip").exists() and not (out / "screens").exists()


class SneakyDesigner:
    """A designer whose answer would embed a file that is no font into the site."""

    name = "llm"

    def __init__(self, inner) -> None:
        self.inner = inner

    async def design(self, **kw):
        design = await self.inner.design(**kw)
        return design.model_copy(update={"font_files": [*design.font_files, "/etc/passwd"]})


async def test_a_design_that_would_embed_a_file_that_is_no_installed_font_fails(tmp_path):
    ctx = site_context(tmp_path)
    ctx = dataclasses.replace(ctx, designer=SneakyDesigner(ctx.designer))
    result = await run_job(build_homepage_graph(InMemorySaver()), ctx, "s", inputs(ctx), order=HOMEPAGE_NODES)
    assert result.status == "failed" and result.error.code == "SITE_CHECK_FAILED"
    assert "'/etc/passwd' is not an installed font" in result.error.message and "site" not in result.values
