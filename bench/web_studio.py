"""Web studio figures: page weight (bytes of every asset `/` loads) and server time per asset (p50/p95 over
200 requests, in-process through the ASGI stack with the security middleware). Prints the figures."""

from __future__ import annotations

import statistics
import tempfile
import time

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

ASSETS = ["/", "/studio/app.js", "/studio/app.css"]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        app = create_app(Settings(data_dir=d, database_url=None, checkpoint_url=None))
        with TestClient(app, base_url="http://127.0.0.1") as client:
            total = 0
            for path in ASSETS:
                times = []
                for _ in range(200):
                    t = time.perf_counter()
                    r = client.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200
                total += len(r.content)
                q = statistics.quantiles(times, n=100)
                print(f"{path:18} {len(r.content):6d} B  p50 {q[49]:.2f} ms  p95 {q[94]:.2f} ms")
            print(f"page weight (uncompressed, all assets): {total} B")


if __name__ == "__main__":
    main()
