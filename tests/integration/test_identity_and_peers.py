"""Raft identity from the hostname (in a real UTS namespace), peer authentication, and why a
node cannot reach a peer."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib

import httpx
import pytest

from walletnode.localcluster import LocalCluster, free_ports

from .conftest import ClusterFactory, wait_for


def whoami(*args: str, hostname: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "walletnode.cli.node", "whoami", *args]
    if hostname is not None:
        # A private UTS namespace: the hostname is really `hostname`, as in a pod.
        command = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def can_unshare() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a UTS namespace here: {probe.stderr.strip()}")


def test_raft_id_and_peers_come_from_the_pod_hostname(can_unshare: None) -> None:
    done = whoami("--replicas", "3", "--service", "wallet-peers", "--namespace", "prod", hostname="wallet-2")
    assert done.returncode == 0, done.stderr
    me = json.loads(done.stdout)
    assert (me["id"], me["name"], me["cluster"]) == (2, "wallet-2", "wallet")
    assert me["self"] == "wallet-2.wallet-peers.prod.svc:7700"
    assert me["peers"] == ["wallet-0.wallet-peers.prod.svc:7700", "wallet-1.wallet-peers.prod.svc:7700"]


def test_a_hostname_without_an_ordinal_is_a_clear_error(can_unshare: None) -> None:
    done = whoami(hostname="laptop")
    assert done.returncode == 2
    assert "not <name>-<ordinal>" in done.stderr and "Traceback" not in done.stderr
    beyond = whoami("--replicas", "3", hostname="wallet-5")
    assert beyond.returncode == 2 and "--join" in beyond.stderr


def test_explicit_id_and_cluster() -> None:
    done = whoami("--id", "1", "--cluster", "10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000")
    me = json.loads(done.stdout)
    assert (me["id"], me["self"], me["peers"]) == (1, "10.0.0.2:7000", ["10.0.0.1:7000", "10.0.0.3:7000"])
    bad = whoami("--id", "3", "--cluster", "10.0.0.1:7000")
    assert bad.returncode == 2 and "--id 3" in bad.stderr


def test_a_peer_without_the_cluster_secret_is_refused(make_cluster: ClusterFactory, tmp_path: os.PathLike[str]) -> None:
    cluster: LocalCluster = make_cluster(start=False)
    cluster.start(0)
    cluster.start(1)
    impostor_secret = os.path.join(tmp_path, "wrong-secret")
    with open(impostor_secret, "w") as f:
        f.write("not-the-cluster-secret-at-all")
    command = cluster.command(2)
    command[command.index("--secret-file") + 1] = impostor_secret
    cluster.start(2, command)
    cluster.wait_ready([0, 1], timeout=60)
    time.sleep(2)  # several heartbeats and reconnect attempts
    honest = httpx.get(cluster.urls[0] + "/v1/status", verify=cluster.verify).json()
    member2 = next(m for m in honest["members"] if m["id"] == 2)
    assert member2["connected"] is False
    outsider = httpx.get(cluster.urls[2] + "/v1/status", verify=cluster.verify).json()
    assert outsider["leader"] is None and outsider["audit_index"] == 0
    assert honest["audit_index"] >= 1


def test_status_says_why_a_peer_cannot_be_reached(make_cluster: ClusterFactory) -> None:
    """A member dials every peer: node 1 here dials a port nobody listens on and a name no resolver
    knows, and says so per peer."""
    cluster: LocalCluster = make_cluster(size=1, start=False)
    silent, own = sorted(f"127.0.0.1:{port}" for port in free_ports(2))
    unknown = "0-gone.invalid:7700"
    command = cluster.command(0)
    command[command.index("--id") + 1] = "1"
    command[command.index("--cluster") + 1] = ",".join([silent, own, unknown])
    cluster.start(0, command)

    def errors() -> dict[str, str] | None:
        status = cluster.status(0)
        found = {m["raft_address"]: m["error"] for m in (status or {}).get("members", []) if m["error"]}
        return found if len(found) == 2 else None

    found = wait_for(errors, timeout=30, what="an error for both peers", diagnose=lambda: cluster.tail(0))
    assert found == {
        silent: f"cannot connect to {silent}: connection refused",
        unknown: "cannot resolve 0-gone.invalid",
    }


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.marker, "w"))


def test_a_pickle_sent_to_the_raft_port_is_never_unpickled(cluster: LocalCluster, tmp_path: os.PathLike[str]) -> None:
    """Raft engines that speak pickle would run this; ours seals msgpack frames with the cluster
    key, so a stranger's bytes must be dropped, never executed, and the node must go on serving."""
    marker = os.path.join(tmp_path, "pwned")
    payload = zlib.compress(pickle.dumps(_Exploit(marker)), 3)
    host, port = cluster.raft_addresses[0].split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(struct.pack("i", len(payload)) + payload)
            s.settimeout(2)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                s.recv(1024)
    time.sleep(0.5)
    assert not os.path.exists(marker), "the node unpickled data from an unauthenticated peer"
    assert httpx.get(cluster.urls[0] + "/readyz", verify=cluster.verify).status_code == 200
