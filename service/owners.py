"""Who holds a job's lease: an owner string that says which process it is, and whether that process is gone.

An owner is `host:pidns:pid:start:token`. A runner that died on this machine is recognised at once (its
job need not wait for its lease to run out): same host and PID namespace, and no process with that pid
and start time. Another machine's, another container's (another PID namespace), or a process that
cannot be checked is never called dead: its lease decides.
"""

from __future__ import annotations

import os
import socket
import uuid


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None if none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # the fields after the command name, which may hold spaces


def new_owner() -> str:
    """This process's owner string (at most 64 characters: the jobs table's column)."""
    host = socket.gethostname()[:24]
    return f"{host}:{_pid_namespace()}:{os.getpid()}:{_start_time(os.getpid()) or '-'}:{uuid.uuid4().hex[:8]}"


def orphaned(owner: str) -> bool:
    """Whether `owner` was a process of this machine (and PID namespace) that no longer exists."""
    parts = owner.split(":")
    if len(parts) != 5:
        return False
    host, ns, pid, start, _ = parts
    if host != socket.gethostname()[:24] or ns != _pid_namespace() or not pid.isdigit() or start == "-":
        return False
    return _start_time(int(pid)) != start  # gone, or the pid now belongs to another process
