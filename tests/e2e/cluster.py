"""The cluster the end-to-end tests run against (see conftest.py for how it is chosen)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.k8s.kube import Helm, Kubectl

# The release (and WalletCluster) name of the ledger chart the tests install, and its size.
WALLET = "wallet"
MEMBERS = 3
# Set on a test item by conftest.py when one of its phases failed.
FAILED = pytest.StashKey[bool]()


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    kubectl: Kubectl
    helm: Helm
    # Our shared hack/k8s cluster rather than one given by the caller.
    local: bool

    def keep_for_a_look(self, test: pytest.Item) -> bool:
        """Whether to leave what a failed test made in place: only on a cluster that is not ours."""
        return not self.local and test.stash.get(FAILED, False)
