"""What accounts cost a request, and how exactly the rate limiter holds its rate.

1. Per request, in one process over one SQLite jobs.db (the API's read path): reading a job as before
   accounts (`store.get`), against authenticating a key (digest check, the key's row, the rate limiter)
   and reading the job through the tenant check (`jobs.get(caller, …)`). Alternated in rounds, so the
   machine's noise falls on both alike.
2. The rate limiter over a 10 s burst (as fast as one client can hit it): requests allowed against the
   configured rate, with in-memory counts and with Redis (when one answers at 127.0.0.1:6379).

    .venv/bin/python bench/auth_cost.py [--requests 5000] [--burst-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.accounts import Caller, RateLimiter  # noqa: E402
from service.jobs import open_service  # noqa: E402
from service.running import new_job_id  # noqa: E402
from service.settings import Settings  # noqa: E402


async def per_request(n: int, rounds: int = 5) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), rate_limit="100000000/minute")
        async with open_service(settings, run_jobs=False, evaluations=False) as jobs:
            key, row = await jobs.accounts.create("bench", ["submit", "read"])
            job_id = new_job_id()
            await jobs.store.create(job_id, "ad", {}, tenant="bench", key_id=row.id)
            bare: list[float] = []
            authed: list[float] = []
            for _ in range(rounds):
                t = time.perf_counter()
                for _ in range(n):
                    await jobs.store.get(job_id)
                bare.append((time.perf_counter() - t) / n * 1000)
                t = time.perf_counter()
                for _ in range(n):
                    caller = await jobs.authenticate(key)
                    await jobs.get(caller, job_id)
                authed.append((time.perf_counter() - t) / n * 1000)
            b, a = statistics.median(bare), statistics.median(authed)
            print(f"1. per request, {n} x {rounds} rounds (median of rounds):")
            print(f"  read a job (before accounts)          {b:.3f} ms")
            print(f"  authenticate + rate + tenant + read   {a:.3f} ms")
            print(f"  accounts add {a - b:.3f} ms per request   (target <= 1 ms)")


async def burst(url: str, seconds: float, rate: str, allowed: int) -> tuple[int, int]:
    limiter = RateLimiter(url, rate)
    caller = Caller("bench", frozenset({"read"}), key_id=f"k{time.monotonic_ns()}")
    ok = refused = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            await limiter.hit(caller)
            ok += 1
        except Exception:  # noqa: BLE001 - RATE_LIMITED is the point
            refused += 1
    return ok, refused


async def limiter(seconds: float) -> None:
    allowed = 2000
    rate = f"{allowed}/{int(seconds)} seconds"
    print(f"2. rate limiter, a {seconds:.0f} s burst against {rate} (moving window):")
    for url in ("memory://", "redis://127.0.0.1:6379"):
        try:
            ok, refused = await burst(url, seconds, rate, allowed)
        except Exception as e:  # noqa: BLE001 - no Redis here
            print(f"  {url}: not measured ({type(e).__name__})")
            continue
        print(
            f"  {url:24s} allowed {ok} of {ok + refused} requests; configured {allowed}: "
            f"off by {abs(ok - allowed) / allowed:.2%}   (target <= 1 %)"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--burst-seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    asyncio.run(per_request(args.requests))
    asyncio.run(limiter(args.burst_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
