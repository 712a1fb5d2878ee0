"""The local cluster of hack/k8s is a real Kubernetes: the apiserver evaluates CEL, the
controller-manager garbage-collects and runs StatefulSets, the scheduler schedules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .kube import PAUSE_IMAGE, Kubectl, KubectlError, wait_until

# func_only: the first test's setup may include the one-time cold build of Kubernetes, which
# has its own timeout in the fixture; the tests themselves poll for at most 60 s per step.
pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180, func_only=True)]

REPLICAS_RULE_MESSAGE = "replicas must be 1, 3, 5 or 7"
IMMUTABLE_MESSAGE = "storageClassName is immutable"


def crd_manifest(group: str) -> dict[str, Any]:
    """A namespaced CRD whose schema carries two CEL rules like the WalletCluster CRD's."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["replicas"],
                                    "properties": {
                                        "replicas": {"type": "integer"},
                                        "storageClassName": {"type": "string"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.replicas in [1, 3, 5, 7]",
                                            "message": REPLICAS_RULE_MESSAGE,
                                        },
                                        {
                                            # A transition rule: compares with the stored object.
                                            "rule": "!has(oldSelf.storageClassName) || "
                                            "(has(self.storageClassName) && "
                                            "self.storageClassName == oldSelf.storageClassName)",
                                            "message": IMMUTABLE_MESSAGE,
                                        },
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def gadget(group: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def gadget_group(kubectl: Kubectl) -> Iterator[str]:
    """A CRD (cluster-scoped, so uniquely named per test) that is established and served."""
    group = f"t{uuid.uuid4().hex[:8]}.walletcluster.test"
    kubectl.apply(crd_manifest(group))
    try:
        wait_until(
            "the CRD to be Established",
            lambda: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in kubectl.json("get", "crd", f"gadgets.{group}")["status"].get("conditions", [])
            ),
        )
        # kubectl resolves the kind through discovery, which lags a moment behind Established.
        wait_until(
            "the gadgets resource in discovery",
            lambda: kubectl.run("get", f"gadgets.{group}", "-A", check=False).returncode == 0,
        )
        yield group
    finally:
        kubectl.run("delete", "crd", f"gadgets.{group}", "--wait=false", "--ignore-not-found")


def test_crd_cel_rule_rejects_bad_object_with_its_message(kubectl: Kubectl, namespace: str, gadget_group: str) -> None:
    with pytest.raises(KubectlError) as rejected:
        kubectl.apply(gadget(gadget_group, "even", replicas=2), namespace)
    assert REPLICAS_RULE_MESSAGE in rejected.value.stderr
    assert kubectl.get(f"gadgets.{gadget_group}", "even", namespace) is None

    stored = kubectl.apply(gadget(gadget_group, "odd", replicas=3, storageClassName="fast"), namespace)
    assert stored["spec"] == {"replicas": 3, "storageClassName": "fast"}
    assert kubectl.get(f"gadgets.{gadget_group}", "odd", namespace) is not None

    # The transition rule sees the stored object: changing the storage class is refused,
    # changing replicas to another allowed value is not.
    with pytest.raises(KubectlError) as immutable:
        kubectl.apply(gadget(gadget_group, "odd", replicas=3, storageClassName="slow"), namespace)
    assert IMMUTABLE_MESSAGE in immutable.value.stderr
    updated = kubectl.apply(gadget(gadget_group, "odd", replicas=5, storageClassName="fast"), namespace)
    assert updated["spec"]["replicas"] == 5


def config_map(name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


@pytest.mark.parametrize("cascade", ["background", "foreground"])
def test_garbage_collector_deletes_dependents_of_a_deleted_owner(
    kubectl: Kubectl, namespace: str, cascade: str
) -> None:
    owner = kubectl.apply(config_map("owner"), namespace)
    kubectl.apply(config_map("dependent", owner), namespace)
    kubectl.apply(config_map("bystander"), namespace)

    kubectl.run("delete", "configmap", "owner", "-n", namespace, f"--cascade={cascade}", "--wait=false")

    wait_until(
        "the garbage collector to delete the dependent",
        lambda: kubectl.get("configmap", "dependent", namespace) is None,
    )
    # Foreground deletion keeps the owner (finalizer foregroundDeletion) until the GC has
    # deleted its blocking dependents, then removes it too.
    wait_until("the owner to be gone", lambda: kubectl.get("configmap", "owner", namespace) is None)
    assert kubectl.get("configmap", "bystander", namespace) is not None


def stateful_set(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            # Parallel: without it the controller waits for web-0 to be Ready before web-1.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "main", "image": PAUSE_IMAGE}],
                },
            },
        },
    }


def test_statefulset_controller_creates_pods_and_scheduler_decides(kubectl: Kubectl, namespace: str) -> None:
    sts = kubectl.apply(stateful_set("web", 3), namespace)
    expected = {"web-0", "web-1", "web-2"}

    def pods() -> dict[str, Any] | None:
        items = kubectl.json("get", "pods", "-n", namespace, "-l", "app=web")["items"]
        by_name = {p["metadata"]["name"]: p for p in items}
        return by_name if set(by_name) == expected else None

    created = wait_until("the StatefulSet's pods", pods)
    for name, pod in created.items():
        (ref,) = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"]) == ("StatefulSet", "web")
        assert ref["uid"] == sts["metadata"]["uid"]
        # Stable network identity: hostname <sts>-<ordinal> under the governing service.
        assert pod["spec"]["hostname"] == name
        assert pod["spec"]["subdomain"] == "web"

    # The scheduler decides about every pod: binds it to a node if the cluster has a Ready one
    # (hack/k8s/up --with-node), otherwise marks it Unschedulable.
    def scheduler_decided() -> bool:
        for pod in kubectl.json("get", "pods", "-n", namespace, "-l", "app=web")["items"]:
            cond = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
            scheduled = cond.get("PodScheduled", {})
            bound = scheduled.get("status") == "True" and bool(pod["spec"].get("nodeName"))
            if not (bound or scheduled.get("reason") == "Unschedulable"):
                return False
        return True

    wait_until("the scheduler to decide about every pod", scheduler_decided)
