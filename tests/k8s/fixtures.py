"""Fixtures for tests against the real local Kubernetes of hack/k8s (built from source).

A pytest plugin (registered in tests/conftest.py), so tests/k8s and tests/e2e share one cluster,
one image build and one set of fixtures per session.

- ``k8s_cluster`` (session): runs ``hack/k8s/up`` once and yields the kubeconfig path. The first
  run builds Kubernetes from the Go module proxy, which takes many minutes; later runs start the
  cached binaries (or find the cluster already running) in seconds. If this machine cannot build
  it (no Go toolchain) the tests are skipped with the reason.
- ``k8s_node`` (session): the same cluster with a node that runs Pods (``up --with-node``).
- ``kubectl`` (session): a :class:`Kubectl` bound to that kubeconfig, using the built kubectl.
- ``namespace`` (function): a fresh namespace per test, deleted afterwards (reported if it failed).
- ``node_image`` (session): ``make images`` loaded into the node (the operator's image too).
- ``helm`` (session): the helm built by hack/k8s, bound to the cluster's kubeconfig.
- ``crd`` (module): the operator's CRDs applied; ``operator`` (function): the operator as a local
  process watching the test's namespace (tests/k8s/walletclusters.py has the helpers around it).

The cluster stays up after the session (starting it is the slow part); ``hack/k8s/down`` stops it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kube import HACK, REPO, Helm, Kubectl, fresh_namespace, namespace_report
from .walletclusters import Operator, delete_cluster

# hack/k8s/build exits with this status when the machine cannot build Kubernetes (no Go).
CANNOT_BUILD = 3
# A cold build of Kubernetes on two cores takes tens of minutes; a warm start seconds.
UP_TIMEOUT = float(os.environ.get("WALLETCLUSTER_K8S_UP_TIMEOUT", "5400"))


def run_up(*args: str) -> str:
    """Runs hack/k8s/up with ``args``; returns the kubeconfig path (skips if Kubernetes cannot be built)."""
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
    yield run_up()


@pytest.fixture(scope="session")
def k8s_node(k8s_cluster: str) -> str:
    """The cluster with a node that runs Pods (kubelet, containerd, kube-proxy, CoreDNS);
    ``hack/k8s/up --with-node``. Returns the node's name. Images available without a registry:
    see ``BUSYBOX_IMAGE`` and ``PAUSE_IMAGE`` in tests/k8s/kube.py."""
    run_up("--with-node")
    (node,) = Kubectl(k8s_cluster).json("get", "nodes")["items"]
    return str(node["metadata"]["name"])


@pytest.fixture(scope="session")
def kubectl(k8s_cluster: str) -> Kubectl:
    return Kubectl(k8s_cluster)


@pytest.fixture(scope="session")
def helm(k8s_cluster: str) -> Helm:
    return Helm(k8s_cluster)


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, ready for Pods (its "default" ServiceAccount exists), deleted after.
    If the test failed, its pods, events and logs are printed first (pytest shows them)."""
    with fresh_namespace(kubectl, request.node.name) as name:
        yield name
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(namespace_report(kubectl, name))


@pytest.fixture(scope="session")
def node_image(k8s_node: str) -> str:
    """walletcluster/node:dev built by `make images` and imported into the node's containerd,
    together with walletcluster/operator:dev (images/build and load-images do both)."""
    for step in (["images/build"], ["hack/k8s/load-images"]):
        done = subprocess.run(step, cwd=REPO, capture_output=True, text=True, timeout=1700)
        assert done.returncode == 0, f"{step[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return "walletcluster/node:dev"


@pytest.fixture(scope="module")
def crd(k8s_cluster: str, kubectl: Kubectl) -> None:
    """The operator's CRDs (WalletCluster, WalletBackup), applied as the operator chart does."""
    for kind in ("walletcluster", "walletbackup"):
        kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / f"{kind}.yaml"))
        kubectl.run("wait", "--for", "condition=established", f"crd/{kind}s.ledger.walletcluster.io", "--timeout=60s")


@pytest.fixture
def operator(crd: None, k8s_cluster: str, kubectl: Kubectl, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    """The operator, as a local process watching the test's namespace."""
    running = Operator(k8s_cluster, namespace, tmp_path / "operator.log")
    running.start()
    yield running
    # While the operator still runs, so that it releases its finalizer and the namespace can go.
    delete_cluster(kubectl, namespace, "--all", check=False)
    running.stop()
    print(running.log.read_text()[-4000:])
