"""Helpers for tests of WalletClusters on the local Kubernetes: the operator as a local process,
the WalletCluster's status and pods as a user sees them, and how to reach the members."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from walletnode.ledger.signing import public_hex

from .kube import Kubectl, wait_until

MINTER = SigningKey(bytes([7]) * 32)


def cluster(name: str = "wallet", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ledger.walletcluster.io/v1alpha1",
        "kind": "WalletCluster",
        "metadata": {"name": name},
        "spec": {"minters": [public_hex(MINTER)], **spec},
    }


class Operator:
    """The operator as a local process with the admin kubeconfig: started, SIGKILLed, restarted.
    It watches `namespace`, or every namespace (None: what the operator chart does by default)."""

    def __init__(self, kubeconfig: str, namespace: str | None, log: Path, *extra: str) -> None:
        self.kubeconfig, self.namespace, self.log, self.extra = kubeconfig, namespace, log, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = port = s.getsockname()[1]
        watch = ["-n", self.namespace] if self.namespace else ["--all-namespaces"]
        command = [sys.executable, "-m", "walletoperator", *watch, "--log-format", "plain"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*command, "--liveness", f"http://127.0.0.1:{port}/healthz", *self.extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": self.kubeconfig},
            )
        wait_until("the operator's liveness endpoint", lambda: _alive(port), timeout=60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a handler thread that hangs keeps it alive
                self.kill()


def _alive(port: int) -> bool | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200 or None
    except httpx.HTTPError:
        return None


def status(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    return (kubectl.get("wc", "wallet", namespace) or {}).get("status") or {}


def running_with(kubectl: Kubectl, namespace: str, members: int) -> dict[str, Any] | None:
    s = status(kubectl, namespace)
    ok = s.get("phase") == "Running" and s.get("readyReplicas") == members and len(s.get("members", [])) == members
    return s if ok and s.get("leader") else None


def pod_urls(kubectl: Kubectl, namespace: str) -> list[str]:
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=wallet")["items"]
    return [f"https://{p['status']['podIP']}:8700" for p in pods if p["status"].get("podIP")]


def pod_ips(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=wallet")["items"]
    return {p["metadata"]["name"]: p["status"]["podIP"] for p in pods if p["status"].get("podIP")}


def trust(kubectl: Kubectl, namespace: str, directory: Path) -> dict[str, Any]:
    """WalletClient's keywords for the members reached by IP from here: the CA the operator
    published (the ConfigMap named in status.tls) and the name the certificates carry."""
    published = status(kubectl, namespace)["tls"]["caConfigMap"]
    ca = directory / "wallet-ca.crt"
    ca.write_text(kubectl.get("configmap", published, namespace)["data"]["ca.crt"])  # type: ignore[index]
    return {"ca": str(ca), "tls_server_name": f"wallet.{namespace}.svc"}


def secret_data(kubectl: Kubectl, namespace: str, name: str) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in kubectl.get("secret", name, namespace)["data"].items()}  # type: ignore[index]


def reasons(kubectl: Kubectl, namespace: str) -> set[str]:
    return {e["reason"] for e in kubectl.json("get", "events", "-n", namespace)["items"]}


def delete_cluster(kubectl: Kubectl, namespace: str, which: str = "wallet", check: bool = True) -> None:
    """`kubectl delete wc` until the operator has released its finalizer: seconds, never a minute."""
    kubectl.run("delete", "wc", which, "-n", namespace, "--wait=true", "--timeout=30s", check=check, timeout=45)
