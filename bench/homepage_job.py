"""Homepage job benchmark, warm (Chromium started), in one process, with SQLite checkpoints.

Prints: per-node seconds (median over runs) and the whole job's median and p90 for a site of `--pages`
pages with two photos; render split into screenshots and the axe-core audit; the load average, because
the figures are CPU-bound and this machine is shared.

    .venv/bin/python bench/homepage_job.py [--runs 5] [--pages 3] [--agents rules]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
from PIL import Image  # noqa: E402

from checkpoints.saver import open_checkpointer  # noqa: E402
from graph.homepage import build_homepage_graph  # noqa: E402
from graph.state import HOMEPAGE_NODES, SCREEN_WIDTHS  # noqa: E402
from service.context import make_renderer  # noqa: E402
from service.homepage import HomepageJobInput, homepage_graph_input  # noqa: E402
from service.jobs import new_job_id, run_job  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.site_context import make_homepage_context  # noqa: E402

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


async def main(runs: int, pages: int, agents: str) -> None:
    if agents != "rules":
        raise SystemExit("this script measures the rule agents; the LLM figures come with --agents llm")
    opts = HomepageJobInput.model_validate({"profile": PROFILE, "pages": EXTRA_PAGES[: max(0, pages - 2)]})
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        t0 = time.perf_counter()
        async with open_checkpointer(settings.checkpoints) as saver, make_renderer(settings) as renderer:
            print(f"Chromium start (with the checkpointer): {time.perf_counter() - t0:.2f} s")
            ctx = make_homepage_context(settings, renderer)
            images = [
                ctx.artifacts.put_image_sync(Image.open(PHOTOS / n).convert("RGB"))
                for n in ("banana.png", "dried_fish_plate.png")
            ]
            graph = build_homepage_graph(saver)
            totals: list[float] = []
            cpus: list[float] = []
            per_node: dict[str, list[float]] = {n: [] for n in HOMEPAGE_NODES}
            await run_job(graph, ctx, new_job_id(), homepage_graph_input(opts, images))  # warm-up
            for _ in range(runs):
                t, c = time.perf_counter(), cpu_seconds()
                result = await run_job(
                    graph, ctx, new_job_id(), homepage_graph_input(opts, images), order=HOMEPAGE_NODES
                )
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
                await renderer.screenshot_site(files, site.pages, SCREEN_WIDTHS)
                shots.append(time.perf_counter() - t)
                t = time.perf_counter()
                await renderer.audit_site(files, site.pages)
                audits.append(time.perf_counter() - t)
    print(f"site: {len(site.pages)} pages ({', '.join(site.pages)}), 2 photos, agents={agents}, {runs} runs")
    for name, xs in per_node.items():
        print(f"  {name:<7} median {statistics.median(xs):.3f} s   max {max(xs):.3f} s")
    print(
        f"  render parts alone: screenshots (2 widths) {statistics.median(shots):.2f} s, "
        f"axe {statistics.median(audits):.2f} s (render runs them side by side)"
    )
    print(f"job: median {statistics.median(totals):.2f} s   p90 {pct(totals, 0.9):.2f} s")
    print(f"CPU per job (Python + Chromium, all cores): median {statistics.median(cpus):.2f} s")
    print(f"site.zip {zip_bytes / 2**20:.2f} MiB ({fonts_bytes / 2**20:.2f} MiB of it embedded fonts)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pages", type=int, default=3)
    ap.add_argument("--agents", choices=["rules", "llm"], default="rules")
    args = ap.parse_args()
    asyncio.run(main(args.runs, args.pages, args.agents))
