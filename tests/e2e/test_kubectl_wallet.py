"""`kubectl wallet` from the user's machine: kubectl finds the plugin the package installs on PATH; for
each command it port-forwards to every member of a WalletCluster installed with the charts and runs
walletctl's command through the forwards, with the user's local keystore (the minter's key never
enters the cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.kube import wait_until

from .cluster import MEMBERS, WALLET, Cluster
from .test_helm_install import LEDGER_CHART, OPERATOR_CHART, running, sets

pytestmark = [pytest.mark.e2e, pytest.mark.k8s, pytest.mark.timeout(900, func_only=True)]


class Plugin:
    """`kubectl wallet ...` typed by a user: kubectl (with no flag before the plugin's name) runs the
    kubectl-wallet of this virtualenv, found on PATH; WALLET_HOME is a keystore on this machine."""

    def __init__(self, cluster: Cluster, namespace: str, home: Path) -> None:
        self.kubectl, self.namespace = cluster.kubectl.binary, namespace
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
        self.env = {**os.environ, "KUBECONFIG": cluster.kubeconfig, "PATH": path, "WALLET_HOME": str(home)}
        self.env["WALLET_PASSWORD"] = ""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        where = [] if args[0] == "keys" else ["-n", self.namespace]  # the keystore is local
        command = [self.kubectl, "wallet", *args, *where]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=180)

    def __call__(self, *args: str) -> Any:
        done = self.run(*args, "-o", "json")
        assert done.returncode == 0, f"kubectl wallet {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout)


def port_forwards(namespace: str) -> list[str]:
    """Command lines of the kubectl port-forward processes into ``namespace`` on this machine."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if b"port-forward" in args and f"--namespace={namespace}".encode() in args:
            found.append(b" ".join(args).decode())
    return found


def test_kubectl_wallet_runs_walletctl_against_every_member(
    e2e_cluster: Cluster, e2e_namespace: str, releases: None, tmp_path: Path
) -> None:
    kubectl, helm, ns = e2e_cluster.kubectl, e2e_cluster.helm, e2e_namespace
    wallet = Plugin(e2e_cluster, ns, tmp_path / "keys")
    minter = wallet("keys", "new", "minter")["public"]
    assert wallet("keys", "show", "minter")["public"] == minter

    started = time.monotonic()
    helm.run("install", "operator", str(OPERATOR_CHART), "-n", ns, "--set", f"watchNamespaces[0]={ns}", "--wait")
    ledger_values = {"minters[0]": minter}
    helm.run("install", WALLET, str(LEDGER_CHART), "-n", ns, *sets(ledger_values), "--wait", "--timeout=60s")
    wait_until("a Running WalletCluster of 3 members", lambda: running(kubectl, ns), timeout=300)

    nodes = wallet("status", WALLET)
    members = {f"{WALLET}-{i}" for i in range(MEMBERS)}
    assert {n["name"] for n in nodes} == members and len(nodes) == MEMBERS
    assert sum(n["role"] == "leader" for n in nodes) == 1
    assert all(n["url"].startswith("https://127.0.0.1:") for n in nodes), "through local port-forwards, verified"

    wallet("keys", "new", "alice")
    wallet("keys", "new", "bob")
    assert wallet("currency", "create", WALLET, "USD", "--scale", "2")["result"] == "ok"
    assert wallet("mint", WALLET, "alice", "100.00", "USD")["result"] == "ok"
    assert wallet("send", WALLET, "bob", "25.50", "USD", "--as", "alice")["result"] == "ok"
    print(f"helm install to the first acknowledged transfer: {time.monotonic() - started:.1f}s")
    (alice,) = wallet("balance", WALLET, "alice")
    assert alice["balances"] == {"USD": 7450} and len(alice["attested_by"]) > MEMBERS // 2
    assert {*alice["attested_by"], *alice["dissenting"]} == members, "every replica was asked"
    assert not port_forwards(ns), "the forwards last as long as the command"

    missing = wallet.run("status", "nosuch")
    assert missing.returncode == 2 and "no WalletCluster 'nosuch'" in missing.stderr, missing.stderr

    # A member whose pod is gone (the operator paused, so nobody brings it back) cannot be forwarded:
    # it is named, shown down, and still counted, so an attested read needs two of the three.
    kubectl.run("patch", "wc", WALLET, "-n", ns, "--type", "merge", "-p", '{"spec":{"paused":true}}')
    kubectl.run("scale", "statefulset", WALLET, "-n", ns, "--replicas", str(MEMBERS - 1))
    gone = f"{WALLET}-{MEMBERS - 1}"
    wait_until(f"{gone} to go", lambda: kubectl.get("pod", gone, ns) is None, timeout=60)
    degraded = wallet.run("status", WALLET, "-o", "json")
    assert degraded.returncode == 0 and f"{gone}: no port-forward" in degraded.stderr, degraded.stderr
    rows = json.loads(degraded.stdout)
    assert sorted(r.get("name", "~down") for r in rows) == [f"{WALLET}-0", f"{WALLET}-1", "~down"], rows
    (bob,) = wallet("balance", WALLET, "bob")
    assert bob["balances"] == {"USD": 2550} and len(bob["attested_by"]) == MEMBERS - 1
    assert len(bob["dissenting"]) == 1, "the member that could not be forwarded still counts"
    kubectl.run("patch", "wc", WALLET, "-n", ns, "--type", "merge", "-p", '{"spec":{"paused":false}}')
