"""A gate that holds a job inside its `analyze` node in a real `adgraph serve` / `adgraph worker` process.

Test-only, and off unless a test turns it on: `plugin_dir(tmp)` writes a `sitecustomize.py` that calls
`install()`; a process started with that folder on its PYTHONPATH and `ADGRAPH_TEST_GATE=<dir>` in its
environment wraps the embedded analyzer so that each call first says so (the file `<dir>/entered`, holding
the process id) and then waits until `release(dir)`. Production code knows nothing of it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

ENV = "ADGRAPH_TEST_GATE"
ROOT = Path(__file__).resolve().parents[2]


def plugin_dir(tmp: Path) -> Path:
    """A folder for PYTHONPATH whose sitecustomize installs the gate (when ADGRAPH_TEST_GATE is set)."""
    folder = tmp / "gate-plugin"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text("from tests.integration.node_gate import install\n\ninstall()\n")
    return folder


def environ(base: dict[str, str], gate: Path, tmp: Path) -> dict[str, str]:
    """`base` plus what turns the gate on in the processes started with it."""
    gate.mkdir(parents=True, exist_ok=True)
    if not (gate / "release").exists():
        os.mkfifo(gate / "release")
    path = os.pathsep.join(p for p in (str(plugin_dir(tmp)), str(ROOT), base.get("PYTHONPATH")) if p)
    return {**base, ENV: str(gate), "PYTHONPATH": path}


def entered(gate: Path) -> int | None:
    """The process id of the process held at the gate, once one is."""
    try:
        return int((gate / "entered").read_text())
    except (FileNotFoundError, ValueError):
        return None


def release(gate: Path) -> None:
    """Let the call held now go on (a later call is held again)."""
    fd = os.open(gate / "release", os.O_WRONLY | os.O_NONBLOCK)  # fails if nobody waits: nothing to let go
    os.close(fd)


def install() -> None:
    gate = os.environ.get(ENV)
    if not gate:
        return
    from nodes.backends.stats import StatsAnalyzer

    analyze = StatsAnalyzer.analyze

    def enter_and_wait() -> None:
        tmp = Path(gate, f"entered.{os.getpid()}")
        tmp.write_text(str(os.getpid()))
        tmp.replace(Path(gate, "entered"))  # whole, or not at all
        with open(Path(gate, "release"), "rb") as fifo:  # blocks until `release` opens the other end
            fifo.read()

    async def held(self: StatsAnalyzer, **kw: Any) -> Any:
        await asyncio.to_thread(enter_and_wait)  # off the event loop: the worker keeps its lease and rows
        return await analyze(self, **kw)

    StatsAnalyzer.analyze = held  # type: ignore[method-assign]
