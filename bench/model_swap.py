"""Model swapping: the GPU runtime against load-run-free per call, for 8 queued ad jobs over 3 models.

Three random-weight models (150-300 MB, safetensors in a temp dir) stand in for segment, background and
analyze. Each ad job calls them in that order, like the ad graph; all jobs are submitted at once as asyncio
tasks, with a memory budget that holds one model at a time.

- baseline: what the reference system did for every call: load from disk, (move to the GPU,) run, delete,
  `empty_cache()`. One call at a time.
- runtime FIFO: `ModelRuntime(max_bypass=0)`, calls served in arrival order.
- runtime: `ModelRuntime` as configured by default (model-first scheduling, aging bound 4).
- arriving: the same jobs arriving one per call served instead of all at once (FIFO against model-first).

Every disk load reads the file from storage: each loader drops its file from the page cache first
(posix_fadvise DONTNEED, no root needed), and the storage bytes read are taken from /proc/self/io. On a CPU
the device is host memory, so a runtime swap costs nothing there (printed); a `copy_on_cpu` row shows what
a host-to-device copy at memory speed would add. With CUDA the run also measures host-to-GPU swap
throughput against a plain pinned-memory copy of the same bytes.

    .venv/bin/python bench/model_swap.py [--quick] [--jobs 8] [--repeats 3]

The last line reads `disk_loads baseline=N runtime=M swap_time_ratio=R`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gpu_runtime.runtime import ModelRuntime, ModelSpec  # noqa: E402
from tests.randweights import DiskMLP, write_mlp  # noqa: E402

WIDTH = 2048  # one layer is 16 MiB in fp32
MODELS = {"segment": 9, "background": 17, "analyze": 13}  # depths: ~151, ~285, ~218 MB
STEPS = list(MODELS)
BATCH = 8
MB = 1e6


def storage_read_bytes() -> int | None:
    """Bytes this process fetched from storage (not from the page cache), or None where unknown."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Result:
    label: str
    disk_loads: int = 0
    loaded_bytes: int = 0
    storage_bytes: int | None = None
    swap_seconds: float = 0.0
    run_seconds: float = 0.0
    wall_seconds: float = 0.0
    swaps_in: int = 0
    order: list[str] = field(default_factory=list)

    def row(self) -> str:
        storage = "n/a" if self.storage_bytes is None else f"{self.storage_bytes / MB:8.0f}"
        return (
            f"{self.label:<28} {self.disk_loads:5d} {self.swaps_in:6d} {self.loaded_bytes / MB:9.0f} "
            f"{storage:>9} {self.swap_seconds:8.2f} {self.run_seconds:7.2f} {self.wall_seconds:7.2f}"
        )


HEADER = (
    f"{'':<28} {'loads':>5} {'swapin':>6} {'disk MB':>9} {'stor. MB':>9} "
    f"{'swap s':>8} {'run s':>7} {'wall s':>7}"
)


def job_inputs(device: torch.device) -> torch.Tensor:
    return torch.linspace(-1, 1, BATCH * WIDTH, device=device).reshape(BATCH, WIDTH)


async def baseline(loaders: dict[str, DiskMLP], device: torch.device, jobs: int) -> Result:
    """Load, run, delete, empty_cache for every call, one call at a time."""
    res = Result("baseline (load-run-free)")
    lock = asyncio.Lock()
    before = storage_read_bytes()

    def call(name: str) -> None:
        t0 = time.perf_counter()
        model = loaders[name]()
        res.loaded_bytes += sum(p.numel() * p.element_size() for p in model.state_dict().values())
        if device.type == "cuda":
            model.to(device)
            torch.cuda.synchronize(device)
        t1 = time.perf_counter()
        with torch.inference_mode():
            model(job_inputs(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        t3 = time.perf_counter()
        res.disk_loads += 1
        res.swap_seconds += (t1 - t0) + (t3 - t2)
        res.run_seconds += t2 - t1

    async def job() -> None:
        for name in STEPS:
            async with lock:
                res.order.append(name)
                await asyncio.to_thread(call, name)

    start = time.perf_counter()
    await asyncio.gather(*(job() for _ in range(jobs)))
    res.wall_seconds = time.perf_counter() - start
    after = storage_read_bytes()
    res.storage_bytes = None if before is None or after is None else after - before
    return res


async def with_runtime(
    label: str,
    loaders: dict[str, DiskMLP],
    sizes: dict[str, int],
    device: torch.device,
    jobs: int,
    *,
    max_bypass: int = 4,
    copy_on_cpu: bool = False,
    arrive_per_calls: int = 0,
) -> tuple[Result, ModelRuntime]:
    budget = max(sizes.values()) + max(sizes.values()) // 10  # one model at a time
    rt = ModelRuntime(
        [ModelSpec(n, loaders[n], sizes[n]) for n in STEPS],
        device=str(device),
        budget_bytes=budget,
        max_bypass=max_bypass,
        copy_on_cpu=copy_on_cpu,
    )
    res = Result(label)
    run_seconds = 0.0
    served = asyncio.Condition()

    def forward(model: torch.nn.Module) -> float:
        t0 = time.perf_counter()
        model(job_inputs(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    async def job(i: int) -> None:
        nonlocal run_seconds
        async with served:  # job i arrives once i * arrive_per_calls calls got the device
            await served.wait_for(lambda: len(res.order) >= i * arrive_per_calls)
        for name in STEPS:
            async with rt.use(name) as model:
                res.order.append(name)
                run_seconds += await rt.run(forward, model)
            async with served:
                served.notify_all()

    before = storage_read_bytes()
    start = time.perf_counter()
    await asyncio.gather(*(job(i) for i in range(jobs)))
    res.wall_seconds = time.perf_counter() - start
    after = storage_read_bytes()
    s = rt.stats()["models"]
    res.disk_loads = sum(m["loads"] for m in s.values())
    res.swaps_in = sum(m["swaps_in"] for m in s.values())
    res.loaded_bytes = sum(m["bytes_from_disk"] for m in s.values())
    res.storage_bytes = None if before is None or after is None else after - before
    res.swap_seconds = sum(m["load_seconds"] + m["swap_seconds"] for m in s.values())
    res.run_seconds = run_seconds
    return res, rt


async def swap_in_rate(loaders: dict[str, DiskMLP], sizes: dict[str, int], device: torch.device) -> str:
    """Bring the largest model back from host memory 5 times; the runtime's own host->device rate."""
    big = max(sizes, key=sizes.get)
    small = min(sizes, key=sizes.get)
    rt = ModelRuntime(
        [ModelSpec(n, loaders[n], sizes[n]) for n in (big, small)],
        device=str(device),
        budget_bytes=sizes[big] + sizes[big] // 10,
    )
    for _ in range(6):
        for name in (big, small):
            async with rt.use(name):
                pass
    m = rt.stats()["models"][big]
    # each swap-in also paid for an eviction, which copies nothing; bytes_moved includes the first placement
    per_swap = m["swap_seconds"] / m["swaps_in"]
    await rt.close()
    rate = sizes[big] / per_swap / 1e9
    return f"{'runtime swap-in':<26} {sizes[big] / MB:7.0f} MB  {rate:6.1f} GB/s (mean of 5)"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="one repeat, baseline and runtime only: under a minute"
    )
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    print(
        f"model swap benchmark: {args.jobs} ad jobs x {len(STEPS)} models, budget = one model; "
        f"device {device}; {os.cpu_count()} cores; torch {torch.__version__}; {platform.platform()}"
    )
    with tempfile.TemporaryDirectory(prefix="adgraph-swap-") as tmp:
        loaders: dict[str, DiskMLP] = {}
        sizes: dict[str, int] = {}
        t0 = time.perf_counter()
        for i, (name, depth) in enumerate(MODELS.items()):
            loader, nbytes = write_mlp(Path(tmp), name, width=WIDTH, depth=depth, seed=i)
            loader.cold = True
            loaders[name], sizes[name] = loader, nbytes
        print(
            "models: "
            + ", ".join(f"{n} {b / MB:.0f} MB" for n, b in sizes.items())
            + f" (random fp32, written in {time.perf_counter() - t0:.1f} s)"
        )

        runs: dict[str, list[Result]] = {}
        for _ in range(repeats):
            for r in [await baseline(loaders, device, args.jobs)]:
                runs.setdefault(r.label, []).append(r)
            copy = device.type == "cpu"  # swaps cost a copy on a GPU; make them cost one on the CPU too
            variants: list[tuple[str, dict[str, Any]]] = [("runtime", {})]
            if not args.quick:
                variants += [
                    ("runtime FIFO", {"max_bypass": 0}),
                    ("arriving, FIFO", {"max_bypass": 0, "arrive_per_calls": 1, "copy_on_cpu": copy}),
                    ("arriving, runtime", {"arrive_per_calls": 1, "copy_on_cpu": copy}),
                ]
            for label, kw in variants:
                r, rt = await with_runtime(label, loaders, sizes, device, args.jobs, **kw)
                await rt.close()
                runs.setdefault(label, []).append(r)

        def median(label: str) -> Result:
            rs = runs[label]
            return sorted(rs, key=lambda r: r.wall_seconds)[len(rs) // 2]

        print(f"\nmedian of {repeats} run(s) by wall time; swap = disk loads + device moves + frees")
        print(HEADER)
        for label in runs:
            print(median(label).row())
        base, rt_res = median("baseline (load-run-free)"), median("runtime")
        print(f"\n{'runtime:':<20}{' '.join(n[:3] for n in rt_res.order)}")
        for label in ["runtime FIFO", "arriving, FIFO", "arriving, runtime"]:
            if label in runs:
                print(f"{label + ':':<20}{' '.join(n[:3] for n in median(label).order)}")
        if "arriving, runtime" in runs:
            print(
                "(arriving: a new job each time a call gets the device: the queue grows while jobs come in)"
            )

        load_mb_s = base.loaded_bytes / MB / max(base.swap_seconds, 1e-9)
        print(f"\nbaseline reads {base.loaded_bytes / MB:.0f} MB at {load_mb_s:.0f} MB/s including frees")
        if base.storage_bytes is None:
            print("page cache: could not read /proc/self/io; disk reads may have come from the page cache")
        elif base.storage_bytes < 0.5 * base.loaded_bytes:
            print(
                f"page cache: files dropped before each load, but storage read only "
                f"{base.storage_bytes / MB:.0f} MB of {base.loaded_bytes / MB:.0f} MB: most reads came "
                "from the page cache"
            )
        else:
            print(
                f"page cache: each file dropped (posix_fadvise DONTNEED) before each load; storage read "
                f"{base.storage_bytes / MB:.0f} MB for {base.loaded_bytes / MB:.0f} MB of weights "
                "(the VM's disk may itself be cached by its host)"
            )
        if device.type == "cpu":
            print(
                "CPU device: host memory is the device, so a runtime swap is bookkeeping and costs ~0 s"
                + (
                    "; the arriving rows use copy_on_cpu: each swap-in copies the weights, as a GPU would"
                    if not args.quick
                    else ""
                )
            )
        else:
            print("\nhost->GPU throughput, largest model's bytes:")
            print(await swap_in_rate(loaders, sizes, device))
            for line in await asyncio.to_thread(plain_copies, max(sizes.values()), device):
                print(line)

        ratio = base.swap_seconds / max(rt_res.swap_seconds, 1e-9)
        loads_ratio = base.disk_loads / max(rt_res.disk_loads, 1)
        print(
            f"\nruntime against baseline: {loads_ratio:.1f}x fewer disk loads, {ratio:.1f}x less swap time, "
            f"wall {base.wall_seconds:.2f} s -> {rt_res.wall_seconds:.2f} s"
        )
        ok = loads_ratio >= 5 and ratio >= 2
        print("targets (>= 5x fewer disk loads, >= 2x less swap time):", "met" if ok else "NOT met")
        print(
            f"disk_loads baseline={base.disk_loads} runtime={rt_res.disk_loads} swap_time_ratio={ratio:.1f}"
        )


def plain_copies(nbytes: int, device: torch.device) -> list[str]:
    """The floor: one host->GPU copy of `nbytes` from pinned and from pageable memory."""
    lines = []
    for label, src in [
        ("plain pinned copy", torch.empty(nbytes, dtype=torch.uint8).pin_memory()),
        ("plain pageable copy", torch.empty(nbytes, dtype=torch.uint8)),
    ]:
        times = []
        for _ in range(6):
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            dst = src.to(device, non_blocking=src.is_pinned())
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
            del dst
        mean = statistics.mean(times[1:])  # the first pays for the allocation
        lines.append(f"{label:<26} {nbytes / MB:7.0f} MB  {nbytes / mean / 1e9:6.1f} GB/s (mean of 5)")
    return lines


if __name__ == "__main__":
    asyncio.run(main())
