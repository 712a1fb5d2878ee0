"""Three etcd members on 127.0.0.1 (Debian's etcd-server), as deployed: default fsync, default timings.

Ports come from the kernel (bind to 0), data and logs live in a directory the caller owns. The
benchmark talks to the members through etcd's JSON gateway (grpc-gateway) on the client port.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

import httpx

from walletnode.localcluster import free_ports

BINARY = "etcd"


def available() -> bool:
    return shutil.which(BINARY) is not None


def version() -> str:
    out = subprocess.run([BINARY, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"etcd Version:\s*(\S+)", out)
    return found.group(1) if found else out.strip().splitlines()[0]


@dataclass
class EtcdCluster:
    base_dir: str
    size: int = 3
    ports: Sequence[int] = ()  # 2 * size: client ports, then peer ports (default: free ones)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: dict[int, IO[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = list(self.ports) or free_ports(2 * self.size)
        self.client_ports, self.peer_ports = ports[: self.size], ports[self.size :]
        self.token = "bench-" + secrets.token_hex(4)
        os.makedirs(self.base_dir, exist_ok=True)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    def _peer_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.peer_ports[i]}"

    def command(self, i: int) -> list[str]:
        initial = ",".join(f"m{j}={self._peer_url(j)}" for j in range(self.size))
        return [
            BINARY,
            f"--name=m{i}",
            f"--data-dir={os.path.join(self.base_dir, f'm{i}')}",
            f"--listen-client-urls={self.urls[i]}",
            f"--advertise-client-urls={self.urls[i]}",
            f"--listen-peer-urls={self._peer_url(i)}",
            f"--initial-advertise-peer-urls={self._peer_url(i)}",
            f"--initial-cluster={initial}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={self.token}",
            "--logger=zap",
            "--log-level=warn",
        ]

    def start_all(self) -> None:
        for i in range(self.size):
            log = open(os.path.join(self.base_dir, f"m{i}.log"), "ab")  # noqa: SIM115 - open for the child's life
            self._logs[i] = log
            self.processes[i] = subprocess.Popen(self.command(i), stdout=log, stderr=subprocess.STDOUT)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every member answers /health with health true (a leader is elected)."""
        deadline = time.monotonic() + timeout
        pending = set(range(self.size))
        while pending:
            for i in list(pending):
                if self.processes[i].poll() is not None:
                    raise RuntimeError(f"etcd member {i} exited:\n{self.tail(i)}")
                try:
                    r = httpx.get(self.urls[i] + "/health", timeout=1)
                    if r.status_code == 200 and r.json().get("health") == "true":
                        pending.discard(i)
                except (httpx.HTTPError, ValueError):
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"etcd members {sorted(pending)} not healthy after {timeout}s")
            time.sleep(0.1)

    def leader_url(self) -> str:
        """Client URL of the current leader: the benchmark sends there, as it does to our leader."""
        for url in self.urls:
            try:
                status = httpx.post(url + "/v3/maintenance/status", json={}, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                continue
            if status.get("leader") and status["leader"] == status.get("header", {}).get("member_id"):
                return url
        raise RuntimeError("no etcd member says it leads")

    def stop_all(self) -> None:
        for i, process in list(self.processes.items()):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._logs.pop(i).close()
            del self.processes[i]

    def tail(self, i: int, lines: int = 15) -> str:
        try:
            with open(os.path.join(self.base_dir, f"m{i}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""
