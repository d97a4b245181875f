"""The model runtime's state across processes.

With `adgraph serve --workers N` the models live in the worker processes, not in the API process that
answers /v1/system and /metrics. Each worker writes its summary to a small file under the data dir every
few seconds; the API reads the fresh ones. (Workers on other machines are not seen this way.)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from service.settings import Settings


def stats_dir(settings: Settings) -> Path:
    return settings.data_dir / "runtime"


async def publish_stats(models: Any, settings: Settings, every_s: float = 2.0) -> None:
    """Write this process's model summary to the data dir every `every_s` until cancelled; remove it then."""
    path = stats_dir(settings) / f"worker-{socket.gethostname()}-{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        while True:
            doc = {"process": path.stem, "pid": os.getpid(), "at": time.time(), **models.summary()}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
            await asyncio.sleep(every_s)
    finally:
        path.unlink(missing_ok=True)


def read_stats(settings: Settings, max_age_s: float = 10.0) -> list[dict[str, Any]]:
    """The summaries workers published in the last `max_age_s` seconds (a dead worker's file goes stale)."""
    out = []
    now = time.time()
    for path in sorted(stats_dir(settings).glob("worker-*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # removed or replaced while read
        if now - doc.get("at", 0) <= max_age_s:
            out.append(doc)
    return out
