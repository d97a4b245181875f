"""Catalog benchmark: one 50-row batch of ads (`service.batches`) on the embedded defaults, in one process,
warm (one ad first, so u2netp and Chromium are loaded), run the way `adgraph catalog` runs it.

Prints total seconds, seconds per ad and peak RSS: of this process (getrusage), and of this process with
its children (Chromium's browser and renderer processes; RSS and PSS sums), sampled every 0.2 s with
psutil.

    .venv/bin/python bench/catalog.py [--rows 50] [--size 1080x1080] [--step-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from service.accounts import LOCAL  # noqa: E402
from service.batches import Batches  # noqa: E402
from service.jobs import open_service  # noqa: E402
from service.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO_DIRS = [ROOT / "tests" / "data" / "photos", ROOT.parent / "shared" / "data" / "photos"]


def photos() -> list[Path]:
    found: dict[str, Path] = {}
    for folder in PHOTO_DIRS:
        for p in sorted(folder.glob("*.png")) + sorted(folder.glob("*.jpg")):
            found.setdefault(p.read_bytes().hex()[:64] + p.name, p)
    return list(found.values())


async def peak_tree_memory(stop: asyncio.Event, peak: list[int]) -> None:
    """[RSS summed, PSS summed] over this process and its children: Chromium's processes share pages, so
    the RSS sum counts those several times; PSS counts each shared page once in all."""
    me = psutil.Process()
    while not stop.is_set():
        rss = pss = 0
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                rss, pss = rss + info.rss, pss + info.pss
        peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def main(rows: int, size: str, step_cache: bool) -> None:
    files = photos()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), step_cache=step_cache, database_url=None, checkpoint_url=None)
        async with open_service(settings, run_jobs=True, evaluations=False) as jobs:
            batches = Batches(jobs)
            ids = [(await jobs.upload(LOCAL, p.read_bytes(), p.name)).id for p in files]
            warm = await batches.create(
                LOCAL, "ad", [{"product_image": ids[0], "headline": "warm"}], run_here=True
            )
            await batches.run_here(LOCAL, warm.batch.id)
            catalog = [
                {
                    "product_image": ids[i % len(ids)],
                    "headline": f"오늘의 상품 {i + 1}번",
                    "subline": "매일 아침 직접 만듭니다",
                    "cta": "주문하기",
                    "size": size,
                    "seed": i,
                }
                for i in range(rows)
            ]
            stop, peak = asyncio.Event(), [0, 0]
            sampler = asyncio.create_task(peak_tree_memory(stop, peak))
            t0 = time.perf_counter()
            view = await batches.create(LOCAL, "ad", catalog, run_here=True)
            created = time.perf_counter() - t0
            view = await batches.run_here(LOCAL, view.batch.id)
            ran = time.perf_counter() - t0
            zip_path = Path(tmp) / "catalog.zip"
            await batches.write_zip(LOCAL, view.batch.id, zip_path)
            total = time.perf_counter() - t0
            stop.set()
            await sampler
            node_s: dict[str, float] = {}
            for job in view.jobs:
                for n in job.nodes or []:
                    node_s[n["name"]] = node_s.get(n["name"], 0.0) + (n["seconds"] or 0.0)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"machine: {platform.machine()} {os.cpu_count()} cores; load {os.getloadavg()}")
    print(f"photos cycled: {len(files)}; rows {rows} at {size}; step cache {'on' if step_cache else 'off'}")
    print(f"concurrency (ADGRAPH_MAX_CONCURRENT_JOBS): {settings.max_concurrent_jobs}")
    print(f"status: {view.status} {view.counts}")
    print(f"create (validate {rows} rows + store): {created:.2f} s")
    print(f"total (create + run + zip): {total:.2f} s; run {ran - created:.2f} s; zip {total - ran:.2f} s")
    print(f"seconds per ad: {total / rows:.3f}")
    print("node seconds per ad: " + ", ".join(f"{k} {v / rows:.3f}" for k, v in node_s.items()))
    print(f"peak RSS, this process (getrusage): {self_peak / 2**20:.0f} MiB")
    print(
        f"peak, this process + children (Chromium), psutil every 0.2 s: RSS sum {peak[0] / 2**20:.0f} MiB, "
        f"PSS sum {peak[1] / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50)
    ap.add_argument("--size", default="1080x1080")
    ap.add_argument("--step-cache", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.rows, a.size, a.step_cache))
