"""A cluster of real node processes on 127.0.0.1: `make run`, the tests and the benchmarks use it."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import httpx


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free right now (bind to 0, read, release)."""
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


@dataclass
class LocalCluster:
    base_dir: str
    minters: Sequence[str]
    size: int = 3
    http_ports: Sequence[int] = ()
    raft_ports: Sequence[int] = ()
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable  # another virtualenv's interpreter runs another version of the node
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: dict[int, IO[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.http_ports or not self.raft_ports:
            ports = free_ports(2 * self.size)
            self.http_ports = self.http_ports or ports[: self.size]
            self.raft_ports = self.raft_ports or ports[self.size :]
        os.makedirs(self.base_dir, exist_ok=True)
        self.secret_file = os.path.join(self.base_dir, "secret")
        if os.path.exists(self.secret_file):
            with open(self.secret_file) as f:
                self.secret = f.read().strip()
        else:
            with open(os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(self.secret)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.http_ports]

    @property
    def raft_addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.raft_ports]

    def data_dir(self, i: int) -> str:
        return os.path.join(self.base_dir, f"node-{i}")

    def log_path(self, i: int) -> str:
        return os.path.join(self.base_dir, f"node-{i}.log")

    def command(self, i: int) -> list[str]:
        args = [
            self.python,
            "-m",
            "walletnode.cli.node",
            "serve",
            "--id",
            str(i),
            "--cluster",
            ",".join(self.raft_addresses),
            "--http",
            f"127.0.0.1:{self.http_ports[i]}",
            "--data-dir",
            self.data_dir(i),
            "--secret-file",
            self.secret_file,
            "--log-format",
            "text",
        ]
        for minter in self.minters:
            args += ["--minter", minter]
        return args + list(self.extra_args)

    def join_command(self, http_port: int, raft_port: int) -> list[str]:
        """A node that is not a member yet: it asks node 0 to add it (`--join --join-via`); its id
        is the next after the members, its data directory next to theirs."""
        me = self.size
        command = self.command(0)
        command[command.index("--id") + 1] = str(me)
        command[command.index("--cluster") + 1] = ",".join([*self.raft_addresses, f"127.0.0.1:{raft_port}"])
        command[command.index("--http") + 1] = f"127.0.0.1:{http_port}"
        command[command.index("--data-dir") + 1] = self.data_dir(me)
        return [*command, "--join", "--join-via", self.urls[0]]

    def start(self, i: int, command: Sequence[str] | None = None) -> None:
        """Start node i, with its usual command line unless `command` replaces it."""
        log = open(self.log_path(i), "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self._logs[i] = log
        env = {**os.environ, **self.env}
        self.processes[i] = subprocess.Popen(
            list(command or self.command(i)), stdout=log, stderr=subprocess.STDOUT, env=env
        )

    def start_all(self) -> None:
        for i in range(self.size):
            self.start(i)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        process = self.processes[i]
        process.send_signal(sig)
        process.wait(timeout=30)
        del self.processes[i]
        self._logs.pop(i).close()

    def send_signal(self, i: int, sig: int) -> None:
        self.processes[i].send_signal(sig)

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        for i in list(self.processes):
            try:
                self.kill(i, sig)
            except subprocess.TimeoutExpired:
                self.kill(i, signal.SIGKILL)

    def alive(self) -> list[int]:
        return [i for i, p in self.processes.items() if p.poll() is None]

    def status(self, i: int, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            r = httpx.get(self.urls[i] + "/v1/status", timeout=timeout)
            return dict(r.json()) if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def leader(self) -> int | None:
        """Index of the node that says it leads (None if none does right now)."""
        for i in self.alive():
            s = self.status(i)
            if s and s["role"] == "leader":
                return i
        return None

    def wait_ready(self, nodes: Sequence[int] | None = None, timeout: float = 30.0) -> None:
        """Until every given node answers /readyz with 200 (leader known, minters replicated)."""
        pending = set(self.alive() if nodes is None else nodes)
        deadline = time.monotonic() + timeout
        while pending:
            for i in list(pending):
                if self.processes.get(i) is not None and self.processes[i].poll() is not None:
                    raise RuntimeError(f"node {i} exited; see {self.log_path(i)}:\n{self.tail(i)}")
                try:
                    if httpx.get(self.urls[i] + "/readyz", timeout=1).status_code == 200:
                        pending.discard(i)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"nodes {sorted(pending)} not ready after {timeout}s")
            time.sleep(0.1)

    def diagnose(self) -> str:
        """What each node says about itself, and the end of its log: for test failure reports."""
        parts = []
        for i in range(self.size):
            process = self.processes.get(i)
            state = "not running" if process is None else f"pid {process.pid}, exit code {process.poll()}"
            try:
                said = httpx.get(self.urls[i] + "/v1/status", timeout=5).text[:600]
            except httpx.HTTPError as exc:
                said = f"{exc.__class__.__name__}: {exc}"
            parts.append(f"--- node {i} ({state}): {said}\n{self.tail(i, 8)}")
        return "\n".join(parts)

    def tail(self, i: int, lines: int = 20) -> str:
        try:
            with open(self.log_path(i), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""
