"""The cluster the end-to-end tests run against (see conftest.py for how it is chosen)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import pytest

from tests.k8s.kube import Helm, Kubectl, hostpath_volumes

# The class of the pre-bound hostPath volumes on the local cluster (no StorageClass object needed:
# the claims are bound statically, by claimRef).
LOCAL_STORAGE_CLASS = "walletcluster-e2e-hostpath"
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
    # Our hack/k8s cluster (hostPath volumes made by the test) rather than one given by the caller.
    local: bool

    def storage_values(self) -> dict[str, str]:
        """Chart values that let a WalletCluster's claims find volumes on this cluster."""
        return {"storage.storageClassName": LOCAL_STORAGE_CLASS} if self.local else {}

    def volumes(self, namespace: str, cluster: str, count: int) -> AbstractContextManager[object]:
        """Volumes for the claims of WalletCluster ``cluster`` (the local cluster has no provisioner)."""
        if not self.local:
            return nullcontext()
        return hostpath_volumes(self.kubectl, namespace, cluster, count, storage_class=LOCAL_STORAGE_CLASS)

    def keep_for_a_look(self, test: pytest.Item) -> bool:
        """Whether to leave what a failed test made in place: only on a cluster that is not ours."""
        return not self.local and test.stash.get(FAILED, False)
