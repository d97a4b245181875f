"""How the service starts its child processes (job workers, the LangGraph dev server, the embedded LLM
server): one pre-exec for all of them, so that none outlives the process that started it."""

from __future__ import annotations

import ctypes
import functools
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def child_preexec(*, cpus: set[int] | None = None, nice: int = 0) -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child dies with its parent (PR_SET_PDEATHSIG, so even on
    kill -9), runs `nice` steps below it and, given `cpus`, only on those cores.

    libc's prctl is looked up now, in the parent: between fork and exec in a process with threads only
    already-resolved calls are safe (no dlopen, no imports). PR_SET_PDEATHSIG fires when the *thread* that
    forked exits, so spawn from a thread that lives as long as the process (the event loop's, not a pool's).
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return functools.partial(_in_child, prctl, frozenset(cpus) if cpus else None, nice)


def _in_child(prctl: Callable[..., int], cpus: frozenset[int] | None, nice: int) -> None:  # pragma: no cover
    """Runs in the child between fork and exec: only calls resolved before the fork."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if nice:
        os.nice(nice)
    if cpus:  # e.g. keep the API's cores free of job work
        os.sched_setaffinity(0, cpus)


def parse_cpu_list(spec: str) -> set[int]:
    """A Linux CPU list ("0,2-3", as in `taskset -c`) as a set of core numbers."""
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus
