"""Fixtures for tests against the real local Kubernetes of hack/k8s (built from source).

- ``k8s_cluster`` (session): runs ``hack/k8s/up`` once and yields the kubeconfig path. The first
  run builds Kubernetes from the Go module proxy, which takes many minutes; later runs start the
  cached binaries (or find the cluster already running) in seconds. If this machine cannot build
  it (no Go toolchain) the tests are skipped with the reason.
- ``k8s_node`` (session): the same cluster with a node that runs Pods (``up --with-node``).
- ``kubectl`` (session): a :class:`Kubectl` bound to that kubeconfig, using the built kubectl.
- ``namespace`` (function): a fresh namespace per test, deleted afterwards.

The cluster stays up after the session (starting it is the slow part); ``hack/k8s/down`` stops it.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kube import HACK, Kubectl, wait_until

# hack/k8s/build exits with this status when the machine cannot build Kubernetes (no Go).
CANNOT_BUILD = 3
# A cold build of Kubernetes on two cores takes tens of minutes; a warm start seconds.
UP_TIMEOUT = float(os.environ.get("WALLETCLUSTER_K8S_UP_TIMEOUT", "5400"))


def _run_up(*args: str) -> str:
    cmd = [str(HACK / "up"), *args]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=UP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hack/k8s/up did not finish in {UP_TIMEOUT:.0f}s")
    if result.returncode == CANNOT_BUILD:
        pytest.skip(f"no local Kubernetes: {result.stderr.strip().splitlines()[-1]}")
    if result.returncode != 0:
        pytest.fail(f"hack/k8s/up {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if not last.startswith("KUBECONFIG="):
        pytest.fail(f"hack/k8s/up printed no KUBECONFIG line: {result.stdout!r}")
    return last.removeprefix("KUBECONFIG=")


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[str]:
    """Path of the admin kubeconfig of the running local cluster."""
    yield _run_up()


@pytest.fixture(scope="session")
def k8s_node(k8s_cluster: str) -> str:
    """The cluster with a node that runs Pods (kubelet, containerd, kube-proxy, CoreDNS);
    ``hack/k8s/up --with-node``. Returns the node's name. Images available without a registry:
    see ``BUSYBOX_IMAGE`` and ``PAUSE_IMAGE`` in tests/k8s/kube.py."""
    _run_up("--with-node")
    (node,) = Kubectl(k8s_cluster).json("get", "nodes")["items"]
    return str(node["metadata"]["name"])


@pytest.fixture(scope="session")
def kubectl(k8s_cluster: str) -> Kubectl:
    return Kubectl(k8s_cluster)


def _namespace_name(node_name: str) -> str:
    """A valid, unique namespace name (RFC 1123 label) that says which test owns it."""
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, ready for Pods (its "default" ServiceAccount exists), deleted after."""
    name = _namespace_name(request.node.name)
    kubectl.run("create", "namespace", name)
    # The ServiceAccount admission plugin rejects Pods until the controller-manager has created
    # the namespace's "default" ServiceAccount.
    wait_until(
        f"ServiceAccount default in {name}",
        lambda: kubectl.get("serviceaccount", "default", name),
    )
    yield name
    # Deletion finishes in the background (namespace controller); tests don't wait for it.
    kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="session")
def node_image(k8s_node: str) -> str:
    """walletcluster/node:dev built by `make images` and imported into the node's containerd."""
    repo = Path(__file__).resolve().parents[2]
    for step in (["images/build"], ["hack/k8s/load-images"]):
        done = subprocess.run(step, cwd=repo, capture_output=True, text=True, timeout=1700)
        assert done.returncode == 0, f"{step[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return "walletcluster/node:dev"
