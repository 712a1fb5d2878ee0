"""Helpers for tests against a real Kubernetes (the local one of hack/k8s, or the cluster of
tests/e2e): polling, kubectl and helm runners, fresh namespaces."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack" / "k8s"

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


class CommandError(Exception):
    """A kubectl or helm command that failed, with its stderr for the assertion message."""

    tool = "command"

    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        self.stderr = result.stderr
        self.returncode = result.returncode
        super().__init__(f"{self.tool} {' '.join(args)} exited {result.returncode}: {result.stderr}")


class KubectlError(CommandError):
    tool = "kubectl"


class Kubectl:
    """A kubectl (by default the one built by hack/k8s), always with the test cluster's kubeconfig."""

    def __init__(self, kubeconfig: str, binary: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.binary = binary or str(HACK / "kubectl")

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        # hack/k8s/kubectl runs the built kubectl; a later --kubeconfig overrides its default.
        cmd = [self.binary, "--kubeconfig", self.kubeconfig, "--request-timeout=30s"]
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


class HelmError(CommandError):
    tool = "helm"


class Helm:
    """A helm (by default the one built by hack/k8s), with the test cluster's kubeconfig if given."""

    def __init__(self, kubeconfig: str | None = None, binary: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.binary = binary or str(HACK / "helm")

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        # hack/k8s/helm runs the built helm; a later --kubeconfig overrides its default.
        cmd = [self.binary, *(["--kubeconfig", self.kubeconfig] if self.kubeconfig else [])]
        result = subprocess.run([*cmd, *args], input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise HelmError(list(args), result)
        return result


def namespace_name(test_name: str) -> str:
    """A valid, unique namespace name (RFC 1123 label) that says which test owns it."""
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:6]}"


def namespace_report(kubectl: Kubectl, namespace: str, log_lines: int = 80) -> str:
    """Pods, events and the last log lines of every container: what a failed test leaves to read."""
    pods = kubectl.run("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = kubectl.run("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    parts = [f"--- pods in {namespace}\n{pods}", "--- events (the last 150)\n" + "\n".join(events.splitlines()[-150:])]
    for pod in kubectl.run("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split():
        logs = kubectl.run("logs", "-n", namespace, pod, "--all-containers", f"--tail={log_lines}", check=False)
        parts.append(f"--- logs of {pod}\n{logs.stdout}{logs.stderr}")
    return "\n".join(parts)


@contextmanager
def fresh_namespace(kubectl: Kubectl, test_name: str, keep: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """A new namespace, ready for Pods (its "default" ServiceAccount exists), deleted afterwards
    unless ``keep()`` says otherwise."""
    name = namespace_name(test_name)
    kubectl.run("create", "namespace", name)
    # The ServiceAccount admission plugin rejects Pods until the controller-manager has created
    # the namespace's "default" ServiceAccount.
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: kubectl.get("serviceaccount", "default", name),
    )
    try:
        yield name
    finally:
        # Deletion finishes in the background (namespace controller); tests don't wait for it.
        if not keep():
            kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")
