"""Homepage job benchmark, warm (Chromium started), in one process, with SQLite checkpoints.

Prints: per-node seconds (median over runs) and the whole job's median and p90 for a site of `--pages`
pages with two photos; render split into screenshots and the axe-core audit; the load average, because
the figures are CPU-bound and this machine is shared.

    .venv/bin/python bench/homepage_job.py [--runs 5] [--pages 3] [--agents rules|llm] [--english]

With `--agents llm` (and no ADGRAPH_LLM_BASE_URL) it also prints the embedded LLM server's start-up time,
and each LLM agent's time, tokens per second and fallbacks per job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
from PIL import Image  # noqa: E402

from checkpoints.saver import open_checkpointer  # noqa: E402
from graph.homepage import build_homepage_graph  # noqa: E402
from graph.state import HOMEPAGE_NODES, SCREEN_WIDTHS  # noqa: E402
from service.running import new_job_id, run_job  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.wiring import make_homepage_context, make_renderer, open_llm  # noqa: E402
from service.workflows import state_types  # noqa: E402
from service.workflows.homepage import HomepageJobInput  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / "tests" / "data" / "photos"
PROFILE = {
    "store_name": "카페 봄",
    "store_type": "카페",
    "advertising_goal": "신규 고객 유치",
    "target_customer": "20-30대 직장인",
    "store_strength": "직접 로스팅한 원두, 수제 디저트, 조용한 분위기",
    "location": "서울 성동구 성수동 123",
    "phone_number": "02-123-4567",
}
PROFILE_EN = {
    "store_name": "Blue Door Bakery",
    "store_type": "bakery",
    "advertising_goal": "more weekday visits",
    "target_customer": "families and commuters",
    "store_strength": "sourdough baked at 5am; butter croissants; friendly staff",
    "location": "12 High Street, Leeds",
    "phone_number": "+44 113 496 0000",
}
EXTRA_PAGES = ["about", "contact", "menu"]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its children (Chromium) so far: a figure the other
    work on a shared machine does not inflate the way it inflates wall time."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def llm_startup(settings: Settings, times: int = 3) -> list[float]:
    """Seconds from spawning the embedded LLM server to its first good /v1/models answer, `times` times."""
    from service.llm_server import EmbeddedLLMServer

    out = []
    for _ in range(times):
        async with EmbeddedLLMServer(threads=settings.llm_threads) as server:
            out.append(server.startup_s)
    return out


async def main(runs: int, pages: int, agents: str, profile: dict) -> None:
    opts = HomepageJobInput.model_validate({"profile": profile, "pages": EXTRA_PAGES[: max(0, pages - 2)]})
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), agents=agents)
        if agents == "llm" and not settings.llm_base_url:
            starts = await llm_startup(settings)
            print(
                f"embedded LLM server start-up ({settings.llm_threads} threads): median "
                f"{statistics.median(starts):.2f} s, max {max(starts):.2f} s ({len(starts)} starts)"
            )
        t0 = time.perf_counter()
        async with (
            open_checkpointer(settings.checkpoints, state_types()) as saver,
            make_renderer(settings) as renderer,
            open_llm(settings) as chat,
        ):
            print(f"Chromium start (with the checkpointer{' and the LLM' if chat else ''}): "
                  f"{time.perf_counter() - t0:.2f} s")  # fmt: skip
            ctx = make_homepage_context(settings, renderer, chat=chat)
            usage = getattr(ctx.planner, "usage", None)
            images = [
                ctx.artifacts.put_image_sync(Image.open(PHOTOS / n).convert("RGB"))
                for n in ("banana.png", "dried_fish_plate.png")
            ]
            graph = build_homepage_graph(saver)
            graph_input = {
                "profile": opts.profile,
                "images": images,
                "pages": opts.pages,
                "style": opts.style,
            }
            totals: list[float] = []
            cpus: list[float] = []
            per_node: dict[str, list[float]] = {n: [] for n in HOMEPAGE_NODES}
            await run_job(graph, ctx, new_job_id(), graph_input)  # warm-up
            if usage is not None:  # count the measured runs only
                usage.agents.clear()
                usage.fallbacks.clear()
            for _ in range(runs):
                t, c = time.perf_counter(), cpu_seconds()
                result = await run_job(graph, ctx, new_job_id(), graph_input, order=HOMEPAGE_NODES)
                totals.append(time.perf_counter() - t)
                cpus.append(cpu_seconds() - c)
                assert result.status == "succeeded", result.error
                for n in result.nodes:
                    per_node[n["name"]].append(n["seconds"])
            site = result.values["site"]
            files = {p: await ctx.artifacts.read_bytes(ref) for p, ref in site.files.items()}
            zip_bytes = result.values["site_zip"].bytes
            fonts_bytes = sum(len(d) for p, d in files.items() if p.startswith("fonts/"))
            shots, audits = [], []
            for _ in range(runs):
                t = time.perf_counter()
                await renderer.render_site(files, site.pages, SCREEN_WIDTHS)
                shots.append(time.perf_counter() - t)
                t = time.perf_counter()
                await renderer.render_site(files, site.pages, SCREEN_WIDTHS, audit=True)
                audits.append(time.perf_counter() - t)
    print(f"site: {len(site.pages)} pages ({', '.join(site.pages)}), 2 photos, agents={agents}, {runs} runs")
    for name, xs in per_node.items():
        print(f"  {name:<7} median {statistics.median(xs):.3f} s   max {max(xs):.3f} s")
    print(
        f"  render_site alone: screenshots (2 widths) {statistics.median(shots):.2f} s, "
        f"with the axe audit on the desktop loads {statistics.median(audits):.2f} s"
    )
    print(f"job: median {statistics.median(totals):.2f} s   p90 {pct(totals, 0.9):.2f} s")
    if usage is not None:
        print(f"LLM agents ({settings.llm_model or 'smollm2, embedded'}), per job:")
        for agent, u in usage.agents.items():
            print(
                f"  {agent:<9} {u.seconds / runs:.2f} s   {u.calls / runs:.1f} calls   "
                f"{u.output_tokens / runs:.0f} tokens out   {u.tokens_per_s:.1f} tokens/s   "
                f"{u.fallbacks / runs:.1f} fallbacks"
            )
        total_llm = sum(u.seconds for u in usage.agents.values()) / runs
        print(f"  all agents {total_llm:.2f} s per job; fallbacks by part: "
              f"{dict(Counter(f['part'] for f in usage.fallbacks))}")  # fmt: skip
        for part, reason in {f["part"]: f["reason"] for f in usage.fallbacks}.items():
            print(f"    {part}: {reason[:160]}")
    print(f"CPU per job (Python + Chromium, all cores): median {statistics.median(cpus):.2f} s")
    print(f"site.zip {zip_bytes / 2**20:.2f} MiB ({fonts_bytes / 2**20:.2f} MiB of it embedded fonts)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pages", type=int, default=3)
    ap.add_argument("--agents", choices=["rules", "llm"], default="rules")
    ap.add_argument("--english", action="store_true", help="An English profile instead of the Korean one.")
    args = ap.parse_args()
    asyncio.run(main(args.runs, args.pages, args.agents, PROFILE_EN if args.english else PROFILE))
