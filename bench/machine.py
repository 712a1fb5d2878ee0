"""The machine a run was measured on: numbers without it mean little."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _virtualised() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " hypervisor" in f.read()
    except OSError:
        return False


def _ram_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    return 0.0


def _filesystem(path: str) -> dict[str, str]:
    """Device, type and options of the filesystem holding `path` (longest mount point match)."""
    best: tuple[str, str, str, str] = ("", "", "", "")
    real = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            device, mount, fstype, options = line.split()[:4]
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best[1]):
                best = (device, mount, fstype, options)
    device, mount, fstype, options = best
    info = {"device": device, "mount": mount, "type": fstype, "options": options}
    name = os.path.basename(device)
    rotational = f"/sys/block/{name}/queue/rotational"
    if os.path.exists(rotational):
        with open(rotational) as f:
            info["rotational"] = f.read().strip()
    return info


def fsync_latency_ms(directory: str, writes: int = 200) -> dict[str, float]:
    """4 KiB write + fsync, `writes` times: the floor under every durable commit of both systems."""
    path = os.path.join(directory, "fsync-probe")
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(writes):
            t0 = time.perf_counter()
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
            samples.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    samples.sort()
    return {
        "p50": round(1000 * statistics.median(samples), 3),
        "p99": round(1000 * samples[int(0.99 * (len(samples) - 1))], 3),
    }


def describe(work_dir: str, etcd_version: str) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "virtualised": _virtualised(),
        "ram_gib": _ram_gib(),
        "filesystem": _filesystem(work_dir),
        "fsync_4k_ms": fsync_latency_ms(work_dir),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "etcd": etcd_version,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
