"""Helpers for tests against the local Kubernetes of hack/k8s: polling and a kubectl runner."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

HACK = Path(__file__).resolve().parents[2] / "hack" / "k8s"

# Images the node of `hack/k8s/up --with-node` makes locally (no registry is reachable).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"
BUSYBOX_IMAGE = "walletcluster.local/busybox:dev"

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.25) -> T:
    """Polls ``probe`` until it returns a truthy value and returns that; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class KubectlError(Exception):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.stderr = result.stderr
        self.returncode = result.returncode
        super().__init__(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr}")


class Kubectl:
    """The kubectl built by hack/k8s, always with the test cluster's kubeconfig."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        # hack/k8s/kubectl runs the built kubectl; a later --kubeconfig overrides its default.
        cmd = [str(HACK / "kubectl"), "--kubeconfig", self.kubeconfig, "--request-timeout=30s"]
        result = subprocess.run([*cmd, *args], input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(list(args), result)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        ns = ["-n", namespace] if namespace else []
        result = self.run("get", kind, name, *ns, "-o", "json", "--ignore-not-found", check=False)
        if result.returncode != 0:
            raise KubectlError(["get", kind, name, *ns], result)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def apply(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Server-side apply of one object; returns the object as stored."""
        ns = ["-n", namespace] if namespace else []
        out = self.run(
            *("apply", "--server-side", "--field-manager=tests", *ns, "-o", "json", "-f", "-"),
            input=json.dumps(obj),
        ).stdout
        return json.loads(out)

    def exec(self, namespace: str, pod: str, *command: str) -> str | None:
        """stdout of ``command`` run in the pod's first container, or None if it failed."""
        result = self.run("exec", "-n", namespace, pod, "--", *command, check=False)
        return result.stdout if result.returncode == 0 else None
