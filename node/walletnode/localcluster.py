"""A cluster of real node processes on 127.0.0.1: `make run`, the tests and the benchmarks use it."""

from __future__ import annotations

import datetime
import functools
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import httpx
from nacl.signing import SigningKey

from . import admin_auth, pki
from .config import raft_id
from .consensus.durable import replace_atomically
from .tls import client_context


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
    admin_ports: Sequence[int] = ()
    tls: bool = True  # HTTPS with a CA of the cluster's own under base_dir/tls; False: --insecure-http
    # A version of the node from before HTTPS and the admin port (a baseline of bench.ab): plain
    # HTTP, and none of the flags it would not know.
    before_tls: bool = False
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    extra_args: Sequence[str] = ()
    # The signing domain. "wallet" is what nodes started with --id and no --name/--cluster-id take.
    cluster_id: str = "wallet"
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable  # another virtualenv's interpreter runs another version of the node
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: dict[int, IO[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert not (self.before_tls and self.tls), "a node from before TLS serves plain HTTP"
        if not self.http_ports or not self.raft_ports or not self.admin_ports:
            ports = free_ports(3 * self.size)
            self.http_ports = self.http_ports or ports[: self.size]
            self.raft_ports = self.raft_ports or ports[self.size : 2 * self.size]
            self.admin_ports = self.admin_ports or ports[2 * self.size :]
        os.makedirs(self.base_dir, exist_ok=True)
        self.admin_key_file = os.path.join(self.base_dir, "admin.key")
        if not os.path.exists(self.admin_key_file):
            replace_atomically(self.admin_key_file, bytes(SigningKey.generate()).hex().encode())
        self.admin_key = admin_auth.load_signing_key(self.admin_key_file)
        self.tls_dir = os.path.join(self.base_dir, "tls")
        if self.tls:
            self._ensure_certificates()
        self.secret_file = os.path.join(self.base_dir, "secret")
        if os.path.exists(self.secret_file):
            with open(self.secret_file) as f:
                self.secret = f.read().strip()
        else:
            with open(os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(self.secret)

    def _ensure_certificates(self) -> None:
        """The cluster's CA (made once, kept) and a server certificate for 127.0.0.1 it signed."""
        os.makedirs(self.tls_dir, mode=0o700, exist_ok=True)
        if not os.path.exists(self.ca_file):
            ca = pki.make_ca(f"walletcluster local CA {secrets.token_hex(4)}")
            replace_atomically(os.path.join(self.tls_dir, "ca.key"), ca.key)
            replace_atomically(self.ca_file, ca.cert)
        with open(self.ca_file, "rb") as f:
            ca_cert = f.read()
        try:
            with open(self.cert_file, "rb") as f:
                current: bytes | None = f.read()
        except FileNotFoundError:
            current = None
        renew_before = datetime.timedelta(days=pki.RENEW_BEFORE_DAYS)
        if pki.needs_renewal(current, ca_cert, ["localhost"], renew_before):
            self.rotate_certificate()

    def rotate_certificate(self, days: int = pki.SERVER_DAYS) -> None:
        """Issue a new server certificate and key and replace the files the nodes serve (they
        reload them within seconds; the key is written first, as in a real rotation a moment
        when the two do not match can be seen)."""
        with open(os.path.join(self.tls_dir, "ca.key"), "rb") as k, open(self.ca_file, "rb") as c:
            ca = pki.KeyPair(c.read(), k.read())
        pair = pki.issue(ca, ["localhost"], ["127.0.0.1"], days=days)
        replace_atomically(self.key_file, pair.key)
        replace_atomically(self.cert_file, pair.cert)

    @property
    def ca_file(self) -> str:
        return os.path.join(self.tls_dir, "ca.crt")

    @property
    def cert_file(self) -> str:
        return os.path.join(self.tls_dir, "server.crt")

    @property
    def key_file(self) -> str:
        return os.path.join(self.tls_dir, "server.key")

    @functools.cached_property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx needs to talk to these nodes (`verify=`)."""
        return client_context(self.ca_file) if self.tls else True

    @property
    def trust(self) -> dict[str, Any]:
        """WalletClient's keyword arguments for these nodes."""
        return {"ca": self.ca_file} if self.tls else {"insecure": True}

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def urls(self) -> list[str]:
        return [f"{self.scheme}://127.0.0.1:{p}" for p in self.http_ports]

    @property
    def admin_urls(self) -> list[str]:
        return [f"{self.scheme}://127.0.0.1:{p}" for p in self.admin_ports]

    def client_env(self) -> dict[str, str]:
        """The environment walletctl needs for these nodes (WALLET_URL and WALLET_CA or WALLET_INSECURE)."""
        trust = {"WALLET_CA": self.ca_file} if self.tls else {"WALLET_INSECURE": "1"}
        return {"WALLET_URL": ",".join(self.urls), **trust}

    def admin_request(
        self, i: int, method: str, path: str, body: Any = None, content: bytes | None = None, timeout: float = 15
    ) -> httpx.Response:
        """An admin call to node i, signed with the cluster's admin key (as the operator does); the
        body is `body` as JSON, or the raw `content`."""
        if content is None:
            content = json.dumps(body).encode() if body is not None else b""
        signed = admin_auth.authorization(self.admin_key, self.cluster_id, f"wallet-{i}", method, path, content)
        return httpx.request(
            method,
            self.admin_urls[i] + path,
            content=content,
            headers={"Authorization": signed, "Content-Type": "application/json"},
            verify=self.verify,
            timeout=timeout,
        )

    @property
    def raft_addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.raft_ports]

    @property
    def raft_peers(self) -> dict[int, str]:
        """Raft id -> address of every member."""
        return {raft_id(i): address for i, address in enumerate(self.raft_addresses)}

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
        if not self.before_tls:
            args += [
                "--admin-http",
                f"127.0.0.1:{self.admin_ports[i]}",
                "--admin-key",
                admin_auth.public_hex(self.admin_key),
            ]
            args += ["--tls-cert", self.cert_file, "--tls-key", self.key_file] if self.tls else ["--insecure-http"]
        for minter in self.minters:
            args += ["--minter", minter]
        if self.cluster_id != "wallet":
            args += ["--cluster-id", self.cluster_id]
        return args + list(self.extra_args)

    def join_command(self, http_port: int, raft_port: int, admin_port: int) -> list[str]:
        """A node that is not a member yet: it asks node 0 to add it (`--join --join-via`, signing
        with the admin key); its id is the next after the members, its data directory next to theirs."""
        me = self.size
        command = self.command(0)
        command[command.index("--id") + 1] = str(me)
        command[command.index("--cluster") + 1] = ",".join([*self.raft_addresses, f"127.0.0.1:{raft_port}"])
        command[command.index("--http") + 1] = f"127.0.0.1:{http_port}"
        command[command.index("--admin-http") + 1] = f"127.0.0.1:{admin_port}"
        command[command.index("--data-dir") + 1] = self.data_dir(me)
        command += ["--join", "--join-via", self.admin_urls[0], "--admin-credential", self.admin_key_file]
        return command + (["--ca", self.ca_file] if self.tls else [])

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
            r = httpx.get(self.urls[i] + "/v1/status", timeout=timeout, verify=self.verify)
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
                    if httpx.get(self.urls[i] + "/readyz", timeout=1, verify=self.verify).status_code == 200:
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
                said = httpx.get(self.urls[i] + "/v1/status", timeout=5, verify=self.verify).text[:600]
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
