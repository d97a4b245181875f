"""The one pre-exec of every child the service starts: dies with its parent, niceness, CPU affinity."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from service.processes import child_preexec, parse_cpu_list

REPORT = """
import ctypes, json, os
sig = ctypes.c_int()
ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(sig))  # PR_GET_PDEATHSIG
print(json.dumps({"pdeathsig": sig.value, "nice": os.nice(0), "cpus": sorted(os.sched_getaffinity(0))}))
"""


def _child(*, cpus: set[int] | None = None, nice: int = 0) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", REPORT],
        preexec_fn=child_preexec(cpus=cpus, nice=nice),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(out.stdout)


def test_a_child_dies_with_its_parent_and_keeps_its_niceness_and_cores() -> None:
    mine = sorted(os.sched_getaffinity(0))
    plain = _child()
    assert plain == {"pdeathsig": 9, "nice": os.nice(0), "cpus": mine}  # SIGKILL, survives exec


def test_a_child_runs_nicer_and_on_the_given_cores() -> None:
    cpu = min(os.sched_getaffinity(0))
    child = _child(cpus={cpu}, nice=5)
    assert child == {"pdeathsig": 9, "nice": min(os.nice(0) + 5, 19), "cpus": [cpu]}


@pytest.mark.parametrize(
    ("spec", "cpus"), [("0", {0}), ("0,2-3", {0, 2, 3}), (" 1 - 2 , 4", {1, 2, 4}), ("3-3", {3})]
)
def test_cpu_lists_read_like_taskset(spec: str, cpus: set[int]) -> None:
    assert parse_cpu_list(spec) == cpus
