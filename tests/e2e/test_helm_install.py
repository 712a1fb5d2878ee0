"""`helm install` of both charts brings up a working ledger: the operator runs in the cluster with
only the chart's RBAC, reconciles the WalletCluster of charts/walletcluster into three Raft members,
and walletctl (run inside a node with `kubectl exec`, so it works wherever pod IPs are not reachable
from the test's machine) creates a currency, mints, transfers and reads the balances back, attested
by the replicas. Then `helm uninstall` removes everything and the namespace goes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.kube import REPO, Kubectl, wait_until
from walletnode.keystore import Keystore

from .cluster import MEMBERS, WALLET, Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.k8s, pytest.mark.timeout(900, func_only=True)]

OPERATOR_CHART = REPO / "charts" / "walletcluster-operator"
LEDGER_CHART = REPO / "charts" / "walletcluster"
OPERATOR = "operator-walletcluster-operator"  # the operator chart's objects for release "operator"


def sets(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def running(kubectl: Kubectl, namespace: str) -> dict[str, Any] | None:
    """The WalletCluster's status once it is Running with every member ready and a leader."""
    status = (kubectl.get("walletcluster", WALLET, namespace) or {}).get("status") or {}
    ok = status.get("phase") == "Running" and status.get("readyReplicas") == MEMBERS
    return status if ok and len(status.get("members", [])) == MEMBERS and status.get("leader") else None


def operator_pods_of(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=operator")["items"])


class Walletctl:
    """walletctl inside pod wallet-0: its keystore on the pod's /tmp (an emptyDir), every member in
    WALLET_URL (attested reads ask them all), an empty WALLET_PASSWORD (keys stored unencrypted)."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl, self.namespace, self.pod = kubectl, namespace, f"{WALLET}-0"
        urls = ",".join(f"https://{WALLET}-{i}.{WALLET}-peers:8700" for i in range(MEMBERS))
        self.env = ["env", f"WALLET_URL={urls}", "WALLET_HOME=/tmp/keys", "WALLET_PASSWORD="]

    def put_key(self, path: Path) -> None:
        """Copies a key file of a keystore made outside the cluster into the pod's keystore."""
        script = f"umask 077 && mkdir -p /tmp/keys && cat > /tmp/keys/{path.name}"
        self.kubectl.run("exec", "-i", "-n", self.namespace, self.pod, "--", "sh", "-c", script, input=path.read_text())

    def __call__(self, *args: str) -> Any:
        out = self.kubectl.run(
            "exec", "-n", self.namespace, self.pod, "--", *self.env, "walletctl", "-o", "json", *args, timeout=120
        ).stdout
        return json.loads(out)


def test_helm_install_brings_up_a_working_ledger(
    e2e_cluster: Cluster, e2e_namespace: str, releases: None, tmp_path: Path
) -> None:
    kubectl, helm, ns = e2e_cluster.kubectl, e2e_cluster.helm, e2e_namespace
    # Every Pod here, the operator's and the ledger's, must pass the "restricted" Pod Security level.
    kubectl.run("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    started = time.monotonic()

    # The operator, watching only this namespace (other tests' WalletClusters are not its business),
    # with two replicas: kopf peering, one active and one standing by.
    operator_values = {"watchNamespaces[0]": ns, "replicaCount": "2"}
    helm.run("install", "operator", str(OPERATOR_CHART), "-n", ns, *sets(operator_values), "--wait", "--timeout=180s")
    operator_ready = time.monotonic() - started
    try:
        minters = Keystore(str(tmp_path / "keys"))
        minter = minters.create("minter", "")
        ledger_values = {"minters[0]": minter.public}
        helm.run("install", WALLET, str(LEDGER_CHART), "-n", ns, *sets(ledger_values), "--wait", "--timeout=60s")
        status = wait_until("a Running WalletCluster of 3 members", lambda: running(kubectl, ns), timeout=300)
        ledger_ready = time.monotonic() - started
        print(f"operator ready after {operator_ready:.1f}s; WalletCluster Running after {ledger_ready:.1f}s")
        assert status["members"] == [f"{WALLET}-{i}" for i in range(MEMBERS)]
        assert {c["type"]: c["status"] for c in status["conditions"]}["Available"] == "True"

        walletctl = Walletctl(kubectl, ns)
        walletctl.put_key(tmp_path / "keys" / "minter.key")
        alice = walletctl("keys", "new", "alice")["public"]
        bob = walletctl("keys", "new", "bob")["public"]
        assert walletctl("currency", "create", "USD", "--scale", "2")["result"] == "ok"
        assert walletctl("mint", "alice", "100.00", "USD")["result"] == "ok"
        assert walletctl("send", "bob", "25.50", "USD", "--as", "alice")["result"] == "ok"
        rows = {row["account"]: row for row in walletctl("balance")}
        assert rows[alice]["balances"] == {"USD": 7450} and rows[bob]["balances"] == {"USD": 2550}
        assert rows[minter.public]["balances"] == {}
        assert len(rows[bob]["attested_by"]) >= MEMBERS // 2 + 1 and not rows[bob]["dissenting"]
        nodes = walletctl("status")
        assert sorted(n["name"] for n in nodes) == [f"{WALLET}-{i}" for i in range(MEMBERS)]
        assert sum(n["role"] == "leader" for n in nodes) == 1

        # The operator did all this with the chart's RBAC alone: no request was refused.
        operator_pods = [p["metadata"]["name"] for p in operator_pods_of(kubectl, ns)]
        assert len(operator_pods) == 2
        for pod in operator_pods:
            logs = kubectl.run("logs", "-n", ns, pod).stdout
            for refused in ("Forbidden", "Not enough permissions"):
                assert refused not in logs, f"{pod} was refused ({refused}):\n{logs[-4000:]}"
        reasons = {e["reason"] for e in kubectl.json("get", "events", "-n", ns)["items"]}
        assert {"Created", "SecretCreated"} <= reasons, "kopf posts Events on the WalletCluster"
        # Both replicas keep their keep-alives in the peering object (the pod name is their id).
        peers = (kubectl.get("kopfpeering", OPERATOR, ns) or {}).get("status") or {}
        assert sorted(peers) == sorted(operator_pods), peers

        # Uninstalling the release deletes the WalletCluster: the operator releases it (its
        # finalizer) and the owned objects are garbage-collected.
        helm.run("uninstall", WALLET, "-n", ns, "--wait", "--timeout=120s")
        assert kubectl.get("walletcluster", WALLET, ns) is None
        wait_until(
            "the owned objects to be garbage-collected",
            lambda: not any(kubectl.get(kind, WALLET, ns) for kind in ("statefulset", "service", "pdb")) or None,
            timeout=120,
        )
    finally:
        for pod in operator_pods_of(kubectl, ns):
            name = pod["metadata"]["name"]
            print(f"--- {name}\n" + kubectl.run("logs", "-n", ns, name, "--tail=30", check=False).stdout)

    helm.run("uninstall", "operator", "-n", ns, "--wait", "--timeout=120s")
    assert kubectl.get("deployment", OPERATOR, ns) is None
    assert kubectl.get("clusterrole", f"{OPERATOR}-{ns}") is None
    assert kubectl.get("clusterrolebinding", f"{OPERATOR}-{ns}") is None
    assert kubectl.get("crd", "walletclusters.ledger.walletcluster.io") is not None, "helm keeps CRDs"
    kubectl.run("delete", "namespace", ns, "--wait=true", "--timeout=180s", timeout=200)
    assert kubectl.get("namespace", ns) is None
    print(f"installed, used, uninstalled and deleted in {time.monotonic() - started:.1f}s")
