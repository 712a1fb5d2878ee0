"""CPU time and resident memory of server processes, read from /proc (Linux only).

Both systems are measured the same way: the CPU seconds their server processes spent (user +
system, including reaped children such as a forked snapshot writer) and a process's RSS.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of `pid` (fields 14-17 of /proc/<pid>/stat), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    # The command name (field 2) may hold spaces; everything after its closing parenthesis is fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return sum(int(x) for x in fields[11:15]) / _TICKS


def total_cpu_seconds(pids: Iterable[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` (VmRSS of /proc/<pid>/status)."""
    return _status_kib(pid, "VmRSS")


def rss_anon_bytes(pid: int) -> int:
    """The process's own resident memory (RssAnon): heap and stacks, not mapped file pages."""
    return _status_kib(pid, "RssAnon")


def own_cpu_seconds() -> float:
    """CPU seconds of this process (the load generator), its threads included."""
    t = os.times()
    return t.user + t.system
