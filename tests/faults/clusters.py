"""Three real ledger nodes the nemesis can hurt: in Linux network namespaces, or in Docker containers.

Both kinds offer the same operations (`FaultCluster`): kill -9 / restart a node, SIGSTOP / SIGCONT
it, cut the network between groups of nodes (real dropped packets), fill a node's data disk and
free it, and clean everything up afterwards, also after a failure.

Every node's data directory is its own small tmpfs mounted on the host (it survives SIGKILL and
container restarts, and it can be filled up for the disk-full fault).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

DATA_MIB = 24
HTTP_PORT = 8700
RAFT_PORT = 7700
NODE_IMAGE = os.environ.get("WALLET_NODE_IMAGE", "walletcluster/node:dev")
DOCKER = os.environ.get("DOCKER", "docker")
PREFIX = "wcf"  # every namespace, link and container this module creates starts with it


class HarnessError(Exception):
    pass


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise HarnessError(f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return done


def can_run_namespaces() -> str | None:
    """None if this machine can run the namespace cluster, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tmpfs mounts)"
    for tool in ("ip", "iptables", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class FaultCluster:
    """The operations the nemesis uses; subclasses implement them for namespaces or Docker."""

    kind = "abstract"
    size = 3

    def __init__(self, base_dir: str, minter: str, extra_args: Sequence[str], subnet: str) -> None:
        """Common layout: a random tag names everything this run creates; node i is at <subnet>.<net>.1i."""
        self.base_dir = base_dir
        self.minter = minter
        self.extra_args = list(extra_args)
        self.tag = secrets.token_hex(2)
        self.net = 100 + int(self.tag, 16) % 150
        self.ips = [f"{subnet}.{self.net}.{11 + i}" for i in range(self.size)]
        self.urls = [f"http://{ip}:{HTTP_PORT}" for ip in self.ips]
        self.data_dirs = [os.path.join(base_dir, f"node-{i}") for i in range(self.size)]

    # lifecycle
    def start(self) -> None: ...
    def cleanup(self) -> None: ...
    # faults
    def kill(self, i: int) -> None: ...
    def restart(self, i: int) -> None: ...
    def running(self, i: int) -> bool:
        raise NotImplementedError

    def pause(self, i: int) -> None: ...
    def resume(self, i: int) -> None: ...
    def partition(self, groups: Sequence[Iterable[int]]) -> None: ...
    def cut(self, i: int, j: int) -> None:
        raise NotImplementedError

    def heal_network(self) -> None: ...
    def diagnose(self) -> str:
        raise NotImplementedError

    def node_log(self, i: int) -> str:
        """Everything node i has logged in this run (across restarts)."""
        raise NotImplementedError

    # disk: every data dir is a tmpfs mounted on the host at self.data_dirs[i]
    data_dirs: list[str]

    def fill_disk(self, i: int) -> int:
        """Fill node i's data filesystem to the last byte; returns the bytes written."""
        path = os.path.join(self.data_dirs[i], "filler")
        written = 0
        chunk = b"\0" * (1 << 20)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while chunk:
                try:
                    written += os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk = chunk[: len(chunk) // 2]
        finally:
            os.close(fd)
        return written

    def try_write(self, i: int) -> tuple[int, str]:
        """POST one well-formed transfer to node i: (HTTP status, error code or "")."""
        transfer = {
            "kind": "transfer",
            "id": secrets.token_hex(16),
            "from": "11" * 32,
            "to": "22" * 32,
            "currency": "USD",
            "amount": 1,
            "signature": "00" * 64,
        }
        try:
            r = httpx.post(self.urls[i] + "/v1/transfers", json={"commands": [transfer]}, timeout=5)
        except httpx.HTTPError as exc:
            return 0, f"no answer: {exc}"
        return r.status_code, r.json().get("error", "") if r.status_code >= 400 else ""

    def free_disk(self, i: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.data_dirs[i], "filler"))

    # helpers shared by both kinds
    def status(self, i: int, timeout: float = 1.0) -> dict[str, Any] | None:
        try:
            r = httpx.get(self.urls[i] + "/v1/status", timeout=timeout)
            return dict(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def leader(self) -> int | None:
        """The node most nodes name as leader right now (None if no majority names one)."""
        names: dict[str, int] = {}
        index_of: dict[str, int] = {}
        for i in range(self.size):
            s = self.status(i)
            if s:
                index_of[s["name"]] = i
                if s.get("leader"):
                    names[s["leader"]] = names.get(s["leader"], 0) + 1
        for name, votes in names.items():
            if votes * 2 > self.size and name in index_of:
                return index_of[name]
        return None

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = 0
            for url in self.urls:
                with contextlib.suppress(httpx.HTTPError):
                    ready += httpx.get(url + "/readyz", timeout=1).status_code == 200
            if ready == self.size:
                return
            time.sleep(0.2)
        raise HarnessError(f"cluster not ready after {timeout}s\n{self.diagnose()}")

    def mount_data(self, path: str, owner: tuple[int, int] | None = None) -> None:
        os.makedirs(path, exist_ok=True)
        opts = f"size={DATA_MIB}m,mode=0700"
        if owner:
            opts += f",uid={owner[0]},gid={owner[1]}"
        sh("mount", "-t", "tmpfs", "-o", opts, f"{PREFIX}-data", path)

    @staticmethod
    def unmount(path: str) -> None:
        if os.path.ismount(path):
            sh("umount", "-l", path, check=False)


# -- network namespaces ------------------------------------------------------------------------------


class NamespaceCluster(FaultCluster):
    """Node i runs in namespace wcf-<tag>-i at 10.77.<net>.1i, wired to a bridge the host sits on."""

    kind = "netns"

    def __init__(self, base_dir: str, minter: str, extra_args: Sequence[str] = ()) -> None:
        super().__init__(base_dir, minter, extra_args, subnet="10.77")
        self.bridge = f"{PREFIX}b{self.tag}"
        self.namespaces = [f"{PREFIX}-{self.tag}-{i}" for i in range(self.size)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.secret_file = os.path.join(base_dir, "secret")
        self._forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]

    def ns(self, i: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.namespaces[i], *args, check=check)

    def start(self) -> None:
        cleanup_stale()
        os.makedirs(self.base_dir, exist_ok=True)
        with open(os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(secrets.token_hex(16))
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"10.77.{self.net}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        # Docker sets the FORWARD policy to DROP; with br_netfilter that drops bridged traffic too.
        sh("iptables", "-I", *self._forward_rule)
        for i, ns in enumerate(self.namespaces):
            host_end, ns_end = f"{PREFIX}{self.tag}h{i}", f"{PREFIX}{self.tag}n{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            sh("ip", "link", "set", ns_end, "netns", ns)
            sh("ip", "link", "set", host_end, "master", self.bridge)
            sh("ip", "link", "set", host_end, "up")
            self.ns(i, "ip", "link", "set", "lo", "up")
            self.ns(i, "ip", "link", "set", ns_end, "name", "eth0")
            self.ns(i, "ip", "addr", "add", f"{self.ips[i]}/24", "dev", "eth0")
            self.ns(i, "ip", "link", "set", "eth0", "up")
            self.mount_data(self.data_dirs[i])
        for i in range(self.size):
            self.restart(i)
        self.wait_ready()

    def command(self, i: int) -> list[str]:
        return [
            "ip", "netns", "exec", self.namespaces[i],
            sys.executable, "-m", "walletnode.cli.node", "serve",
            "--id", str(i),
            "--cluster", ",".join(f"{ip}:{RAFT_PORT}" for ip in self.ips),
            "--http", f"0.0.0.0:{HTTP_PORT}",
            "--data-dir", self.data_dirs[i],
            "--secret-file", self.secret_file,
            "--log-format", "text",
            "--minter", self.minter,
            "--insecure-http",  # the faults are in consensus, not in TLS (tests/integration/test_tls_and_admin.py)
            *self.extra_args,
        ]  # fmt: skip

    def log_path(self, i: int) -> str:
        return os.path.join(self.base_dir, f"node-{i}.log")

    def restart(self, i: int) -> None:
        if self.running(i):
            return
        with open(self.log_path(i), "ab") as log:
            # `ip netns exec` execs the command: the Popen pid is the node's own pid.
            self.processes[i] = subprocess.Popen(self.command(i), stdout=log, stderr=subprocess.STDOUT)

    def running(self, i: int) -> bool:
        p = self.processes.get(i)
        return p is not None and p.poll() is None

    def kill(self, i: int) -> None:
        p = self.processes.get(i)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)

    def pause(self, i: int) -> None:
        p = self.processes.get(i)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        p = self.processes.get(i)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGCONT)

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Drop every packet between nodes of different groups (both directions, in both nodes)."""
        group_of = {i: g for g, members in enumerate(groups) for i in members}
        for i in range(self.size):
            for j in range(self.size):
                if i != j and group_of.get(i, -1) != group_of.get(j, -2):
                    self.ns(i, "iptables", "-A", "INPUT", "-s", self.ips[j], "-j", "DROP")
                    self.ns(i, "iptables", "-A", "OUTPUT", "-d", self.ips[j], "-j", "DROP")

    def cut(self, i: int, j: int) -> None:
        """Lose the packets between nodes i and j only, on arrival (as a network that black-holes
        them: a sender sees no error, a connect just hangs); both still reach the third node."""
        self.ns(i, "iptables", "-A", "INPUT", "-s", self.ips[j], "-j", "DROP")
        self.ns(j, "iptables", "-A", "INPUT", "-s", self.ips[i], "-j", "DROP")

    def heal_network(self) -> None:
        for i in range(self.size):
            self.ns(i, "iptables", "-F", "INPUT", check=False)
            self.ns(i, "iptables", "-F", "OUTPUT", check=False)

    def cleanup(self) -> None:
        for _i, p in self.processes.items():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=30)
        for path in self.data_dirs:
            self.unmount(path)
        for ns in self.namespaces:
            sh("ip", "netns", "delete", ns, check=False)
        sh("ip", "link", "delete", self.bridge, check=False)
        while sh("iptables", "-D", *self._forward_rule, check=False).returncode == 0:
            pass

    def node_log(self, i: int) -> str:
        try:
            with open(self.log_path(i), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def diagnose(self) -> str:
        parts = []
        for i in range(self.size):
            p = self.processes.get(i)
            state = "never started" if p is None else f"pid {p.pid}, exit code {p.poll()}"
            tail = "".join(self.node_log(i).splitlines(keepends=True)[-10:])
            parts.append(f"--- node {i} ({state}) status={self.status(i)}\n{tail}")
        return "\n".join(parts)


def cleanup_stale() -> None:
    """Remove namespaces, bridges and FORWARD rules left by a run that was itself killed."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{PREFIX}-"):
            sh("ip", "netns", "pids", name, check=False)
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "delete", name, check=False)
    for line in sh("ip", "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(f"{PREFIX}b"):
            sh("ip", "link", "delete", name, check=False)
            while sh("iptables", "-D", "FORWARD", "-i", name, "-o", name, "-j", "ACCEPT", check=False).returncode == 0:
                pass
    with open("/proc/mounts") as f:
        for line in f:
            source, target = line.split()[:2]
            if source == f"{PREFIX}-data":
                sh("umount", "-l", target, check=False)


# -- Docker ------------------------------------------------------------------------------------------


def can_run_docker() -> str | None:
    if os.geteuid() != 0:
        return "needs root (tmpfs data mounts)"
    if shutil.which(DOCKER) is None:
        return "docker is not installed"
    try:
        done = sh(DOCKER, "image", "inspect", NODE_IMAGE, check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer"
    if done.returncode != 0:
        return f"image {NODE_IMAGE} is missing (make images): {done.stderr.strip()[:200]}"
    return None


class DockerCluster(FaultCluster):
    """Three node containers (hostnames wallet-0..2) on a user-defined Docker network.

    Faults are Docker's own: `docker kill -s KILL` + `docker start`, `docker pause/unpause`,
    `docker network disconnect/connect` (a disconnected node is cut off from everyone). Each node's
    /data is a tmpfs mounted on the host and bind-mounted in, so it survives container restarts
    and the host can fill it up.
    """

    kind = "docker"

    def __init__(self, base_dir: str, minter: str, extra_args: Sequence[str] = ()) -> None:
        super().__init__(base_dir, minter, extra_args, subnet="10.78")
        self.network = f"{PREFIX}-{self.tag}"
        self.names = [f"{PREFIX}-{self.tag}-wallet-{i}" for i in range(self.size)]
        self.disconnected: set[int] = set()
        self.secret = secrets.token_hex(16)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(DOCKER, *args, check=check, timeout=120)

    def start(self) -> None:
        cleanup_stale_docker()
        os.makedirs(self.base_dir, exist_ok=True)
        self.docker(
            "network", "create", "--label", f"io.walletcluster.test={PREFIX}",
            "--subnet", f"10.78.{self.net}.0/24", self.network,
        )  # fmt: skip
        for i, name in enumerate(self.names):
            self.mount_data(self.data_dirs[i], owner=(10001, 10001))
            self.docker(
                "run", "--detach", "--name", name, "--label", f"io.walletcluster.test={PREFIX}",
                "--hostname", f"wallet-{i}", "--network", self.network, "--ip", self.ips[i],
                "--network-alias", f"wallet-{i}.wallet",
                "--read-only", "--tmpfs", "/tmp", "--volume", f"{self.data_dirs[i]}:/data",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--env", f"WALLET_CLUSTER_SECRET={self.secret}",
                NODE_IMAGE, "--minter", self.minter, "--replicas", str(self.size), "--insecure-http",
                *self.extra_args,
            )  # fmt: skip
        self.wait_ready(timeout=90)

    def running(self, i: int) -> bool:
        done = self.docker("inspect", "-f", "{{.State.Running}}", self.names[i], check=False)
        return done.stdout.strip() == "true"

    def kill(self, i: int) -> None:
        self.docker("kill", "--signal", "KILL", self.names[i], check=False)
        self.docker("wait", self.names[i], check=False)

    def restart(self, i: int) -> None:
        if not self.running(i):
            self.docker("start", self.names[i])

    def pause(self, i: int) -> None:
        self.docker("pause", self.names[i], check=False)

    def resume(self, i: int) -> None:
        self.docker("unpause", self.names[i], check=False)

    def partition(self, groups: Sequence[Iterable[int]]) -> None:
        """Docker can only cut a container off entirely: every singleton group is disconnected."""
        for group in groups:
            members = list(group)
            if len(members) == 1 and members[0] not in self.disconnected:
                self.docker("network", "disconnect", "--force", self.network, self.names[members[0]])
                self.disconnected.add(members[0])

    def heal_network(self) -> None:
        for i in sorted(self.disconnected):
            self.docker(
                "network", "connect", "--ip", self.ips[i], "--alias", f"wallet-{i}.wallet",
                self.network, self.names[i],
            )  # fmt: skip
        self.disconnected.clear()

    def cleanup(self) -> None:
        for name in self.names:
            self.docker("rm", "--force", "--volumes", name, check=False)
        self.docker("network", "rm", self.network, check=False)
        for path in self.data_dirs:
            self.unmount(path)

    def node_log(self, i: int) -> str:
        done = self.docker("logs", self.names[i], check=False)
        return done.stdout + done.stderr

    def diagnose(self) -> str:
        parts = []
        for i, name in enumerate(self.names):
            state = self.docker("inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}}", name, check=False)
            logs = self.docker("logs", "--tail", "10", name, check=False)
            parts.append(f"--- {name}: {state.stdout.strip()} status={self.status(i)}\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)


def cleanup_stale_docker() -> None:
    """Remove containers and networks left by a run that was itself killed."""
    label = f"label=io.walletcluster.test={PREFIX}"
    names = sh(DOCKER, "ps", "-aq", "--filter", label, check=False).stdout.split()
    if names:
        sh(DOCKER, "rm", "--force", "--volumes", *names, check=False)
    for network in sh(DOCKER, "network", "ls", "-q", "--filter", label, check=False).stdout.split():
        sh(DOCKER, "network", "rm", network, check=False)
