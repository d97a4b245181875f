"""Ad jobs on the GPU backends (BiRefNet, FLUX, Qwen2-VL) through one model runtime, in one process.

With no GPU and no real weights this runs the tiny random-weight models of the tests on the CPU: the
figures are about the plumbing, not the models — what the first job pays to load each model from disk,
what later jobs pay (nothing: the runtime keeps them), per-node times, and the runtime's counters. The
system adgraph replaces loaded every model from disk for every job.

    .venv/bin/python bench/gpu_job.py [--runs 5] [--device cpu] [--models DIR]

`--models DIR` takes a directory holding birefnet/, flux/, qwen2vl/ (real weights on a GPU machine);
without it the tiny models are built in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import skimage.data  # noqa: E402
from PIL import Image  # noqa: E402

from checkpoints.saver import open_checkpointer  # noqa: E402
from graph.ad import build_ad_graph  # noqa: E402
from kernel.models import AdCopy  # noqa: E402
from service.running import new_job_id, run_job  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.wiring import open_ad_context  # noqa: E402
from service.workflows import state_types  # noqa: E402


async def main(runs: int, device: str, models: Path | None) -> None:
    photo = Image.fromarray(skimage.data.coffee())
    with tempfile.TemporaryDirectory() as tmp:
        tiny = models is None
        if models is None:
            from tests import tinymodels

            models = Path(tmp) / "models"
            t = time.perf_counter()
            tinymodels.build_tiny_birefnet(models / "birefnet")
            tinymodels.build_tiny_flux(models / "flux")
            tinymodels.build_tiny_qwen2vl(models / "qwen2vl")
            print(f"built tiny models in {time.perf_counter() - t:.2f} s")
        toy = {"flux_steps": 2, "flux_resolution": 64, "birefnet_resolution": 64, "qwen2vl_max_new_tokens": 8}
        settings = Settings(
            data_dir=Path(tmp) / "data",
            birefnet_path=models / "birefnet",
            flux_path=models / "flux",
            qwen2vl_path=models / "qwen2vl",
            segment_backend="birefnet",
            background_backend="flux",
            analyze_backend="qwen2vl",
            gpu_device=device,
            **(toy if tiny else {}),
        )
        async with (
            open_checkpointer(settings.checkpoints, state_types()) as saver,
            open_ad_context(settings) as ctx,
        ):
            graph = build_ad_graph(saver)
            ref = ctx.artifacts.put_image_sync(photo)
            walls: list[float] = []
            per_node: dict[str, list[float]] = {}
            for i in range(runs):
                t = time.perf_counter()
                result = await run_job(
                    graph,
                    ctx,
                    new_job_id(),
                    {
                        "product_image": ref,
                        "copy": AdCopy(headline="갓 볶은 원두", subline="매일 아침 로스팅", cta="주문하기"),
                        "background_prompt": "warm beige linen table",
                        "size": "1080x1080",
                        "seed": i,
                        "text_position": "auto",
                        "font": None,
                    },
                )
                walls.append(time.perf_counter() - t)
                assert result.status == "succeeded", result.error and result.error.to_dict()
                for n in result.nodes:
                    per_node.setdefault(n["name"], []).append(n["seconds"])
                gpu_nodes = {
                    k: round(v[-1], 3)
                    for k, v in per_node.items()
                    if k in ("segment", "background", "analyze")
                }
                print(f"job {i + 1}: {walls[-1]:.2f} s  {gpu_nodes}")
            stats = ctx.models.runtime.stats()
    print(f"\n{platform.node()} {os.cpu_count()} cores, device {stats['device']}, {runs} jobs")
    later = statistics.median(walls[1:] or walls)
    print(f"first job {walls[0]:.2f} s (loads the models); later jobs median {later:.2f} s")
    for name, m in stats["models"].items():
        print(
            f"  {name:8s} loads {m['loads']}  uses {m['uses']}  load {m['load_seconds']:.3f} s  "
            f"swaps in {m['swaps_in']}  evictions {m['evictions']}  bytes {m['bytes']:,}  "
            f"wait {m['wait_seconds']:.4f} s"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", type=Path, default=None)
    args = ap.parse_args()
    asyncio.run(main(args.runs, args.device, args.models))
