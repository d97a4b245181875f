"""Ad job benchmark on embedded defaults, warm (u2netp and Chromium loaded), in one process.

Prints: the whole job's median and p90; checkpoint overhead per node (SQLite with durability="sync",
against the same graph with no checkpointer); a branch from `composite` against a full job; peak RSS.

    .venv/bin/python bench/ad_job.py [--runs 10] [--size 1080x1080]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
from PIL import Image  # noqa: E402

from checkpoints.history import find_snapshot, seed_branch  # noqa: E402
from checkpoints.saver import open_checkpointer  # noqa: E402
from checkpoints.step_cache import FileStepCache  # noqa: E402
from graph.ad import INPUT_CONSUMERS, build_ad_graph  # noqa: E402
from graph.state import AD_NODES  # noqa: E402
from kernel.models import AdCopy  # noqa: E402
from service.running import new_job_id, run_job  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.wiring import open_ad_context  # noqa: E402
from service.workflows import state_types  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def main(runs: int, size: str) -> None:
    photo = Image.fromarray(skimage.data.coffee())
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), step_cache=False)  # each job does its own work
        async with (
            open_checkpointer(settings.checkpoints, state_types()) as saver,
            open_ad_context(settings) as ctx,
        ):
            ref = ctx.artifacts.put_image_sync(photo)

            def job_input(i: int) -> dict:
                return {
                    "product_image": ref,
                    "copy": AdCopy(
                        headline="갓 볶은 원두, 오늘의 커피", subline="매일 아침 직접 로스팅", cta="주문하기"
                    ),
                    "background_prompt": "warm beige linen table",
                    "size": size,
                    "seed": i,
                    "text_position": "auto",
                    "font": None,
                }

            graphs = {"sqlite": build_ad_graph(saver), "none": build_ad_graph(None)}
            walls: dict[str, list[float]] = {"sqlite": [], "none": []}
            overhead: dict[str, list[float]] = {"sqlite": [], "none": []}
            per_node: dict[str, list[float]] = {n: [] for n in AD_NODES}
            last_job = None
            for i in range(-1, runs):  # run -1 warms up both graphs
                for name, graph in graphs.items():
                    job_id = new_job_id()
                    t0 = time.perf_counter()
                    result = await run_job(graph, ctx, job_id, job_input(i))
                    wall = time.perf_counter() - t0
                    assert result.status == "succeeded", result.error
                    if i < 0:
                        continue
                    walls[name].append(wall)
                    overhead[name].append(wall - sum(n["seconds"] for n in result.nodes))
                    if name == "sqlite":
                        last_job = job_id
                        for n in result.nodes:
                            per_node[n["name"]].append(n["seconds"])

            branch_walls = []
            graph = graphs["sqlite"]
            source = await find_snapshot(graph, last_job, AD_NODES, node="composite")
            for i in range(runs):
                child = new_job_id()
                t0 = time.perf_counter()
                cfg = await seed_branch(
                    graph,
                    source,
                    child,
                    AD_NODES,
                    {"copy": AdCopy(headline=f"새 카피 {i}")},
                    INPUT_CONSUMERS,
                    {},
                )
                result = await run_job(graph, ctx, child, None, config=cfg)
                branch_walls.append(time.perf_counter() - t0)
                assert result.status == "succeeded", result.error

            # the step cache: a first job on a photo (segmented) against a second job on it (reused)
            cached_ctx = dataclasses.replace(
                ctx, cache=FileStepCache(Path(tmp) / "step-cache", ctx.artifacts), scope="bench"
            )
            firsts, seconds = [], []
            for i in range(runs):
                pixels = np.array(photo)
                pixels[0, 0] = (i, i, i)  # another photo each round: a cold cache for its first job
                ref_i = ctx.artifacts.put_image_sync(Image.fromarray(pixels))
                for walls_of in (firsts, seconds):
                    t0 = time.perf_counter()
                    result = await run_job(
                        graph, cached_ctx, new_job_id(), {**job_input(i), "product_image": ref_i}
                    )
                    walls_of.append(time.perf_counter() - t0)
                    assert result.status == "succeeded", result.error
                assert result.nodes[0].get("cached"), result.nodes[0]

    full = statistics.median(walls["sqlite"])
    ckpt_per_node_ms = (statistics.median(overhead["sqlite"]) - statistics.median(overhead["none"])) / len(
        AD_NODES
    )
    branch = statistics.median(branch_walls)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"ad job {size}, warm, {runs} runs (embedded defaults, SQLite checkpoints, durability=sync)")
    print(f"  whole job median {full:.3f} s  p90 {pct(walls['sqlite'], 0.9):.3f} s   (target <= 1.5 s)")
    print(f"  same graph, no checkpointer: median {statistics.median(walls['none']):.3f} s")
    for n in AD_NODES:
        print(f"    {n:<10} median {statistics.median(per_node[n]) * 1000:7.1f} ms")
    print(f"  checkpoint overhead per node {ckpt_per_node_ms * 1000:.2f} ms   (target <= 5 ms)")
    print(
        f"  branch from composite median {branch:.3f} s = {branch / full:.0%} of a full job (target <= 40 %)"
    )
    first, second = statistics.median(firsts), statistics.median(seconds)
    print(
        f"  step cache: first job on a photo {first:.3f} s, second {second:.3f} s: "
        f"{1 - second / first:.0%} faster (target >= 30 %)"
    )
    print(f"  peak RSS of the Python process {rss_mb:.0f} MB   (target <= 800 MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--size", default="1080x1080")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.size))
