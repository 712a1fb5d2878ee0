"""End-to-end tests: the Helm charts installed on a Kubernetes that runs Pods, used like a user would.

Which cluster:

- ``WALLETCLUSTER_E2E_KUBECONFIG=<path>``: a cluster someone else started, with the images
  walletcluster/node:dev and walletcluster/operator:dev already on its nodes (the kind workflow:
  ``kind load docker-image``). kubectl and helm come from PATH.
- otherwise the local Kubernetes of hack/k8s with its node (the fixtures of tests/k8s): the images
  built by ``make images`` and loaded into the node.

Either way the cluster's default StorageClass provides the volumes (on hack/k8s: the local-path
provisioner).

A test that fails on a given cluster leaves its namespace and releases there for a look (the kind
workflow collects their state and logs); on the shared local cluster everything is removed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator

import pytest

from tests.k8s.kube import Helm, Kubectl, fresh_namespace

from .cluster import FAILED, WALLET, Cluster

E2E_KUBECONFIG = os.environ.get("WALLETCLUSTER_E2E_KUBECONFIG")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    if outcome.get_result().failed:
        item.stash[FAILED] = True


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"WALLETCLUSTER_E2E_KUBECONFIG is set but {name} is not on PATH")
    return path


@pytest.fixture(scope="session")
def e2e_cluster(request: pytest.FixtureRequest) -> Cluster:
    if E2E_KUBECONFIG:
        return Cluster(
            E2E_KUBECONFIG,
            Kubectl(E2E_KUBECONFIG, binary=_tool("kubectl")),
            Helm(E2E_KUBECONFIG, binary=_tool("helm")),
            local=False,
        )
    # hack/k8s/up --with-node, images/build and hack/k8s/load-images (node and operator images).
    request.getfixturevalue("node_image")
    kubeconfig: str = request.getfixturevalue("k8s_cluster")
    return Cluster(kubeconfig, Kubectl(kubeconfig), Helm(kubeconfig), local=True)


@pytest.fixture
def e2e_namespace(e2e_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the e2e cluster (deleted afterwards if the test did not)."""
    keep = lambda: e2e_cluster.keep_for_a_look(request.node)  # noqa: E731
    with fresh_namespace(e2e_cluster.kubectl, request.node.name, keep=keep) as name:
        yield name


@pytest.fixture
def releases(e2e_cluster: Cluster, e2e_namespace: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a failed test left installed is uninstalled (unless kept for a look): the cluster-scoped
    RBAC would outlive the namespace, and a WalletCluster needs its operator to release it (kopf's
    finalizer)."""
    yield
    if e2e_cluster.keep_for_a_look(request.node):
        return
    for release in (WALLET, "operator"):  # the ledger first, while its operator still runs
        e2e_cluster.helm.run("uninstall", release, "-n", e2e_namespace, "--wait", "--timeout=120s", check=False)
