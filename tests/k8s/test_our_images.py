"""Our own images run as Pods: imported from `make images` into the node's containerd, and a Pod
reaches the API server through the `kubernetes` Service with its ServiceAccount token."""

from __future__ import annotations

import pytest

from .kube import Kubectl, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1800, func_only=True)]

ASK_THE_API = """
import json, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
request = urllib.request.Request("https://kubernetes.default.svc/version",
                                 headers={"Authorization": "Bearer " + open(sa + "/token").read()})
context = ssl.create_default_context(cafile=sa + "/ca.crt")
print("apiserver", json.load(urllib.request.urlopen(request, context=context, timeout=10))["gitVersion"])
"""


def test_a_pod_of_our_node_image_reaches_the_api_server(kubectl: Kubectl, node_image: str, namespace: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "asks-api"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": node_image,
                        "imagePullPolicy": "Never",
                        "command": ["python3", "-c", ASK_THE_API],
                        "securityContext": {
                            "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False,
                        },
                    }
                ],
            },
        },
        namespace,
    )

    def finished() -> str | None:
        pod = kubectl.get("pod", "asks-api", namespace) or {}
        return (
            pod.get("status", {}).get("phase")
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
            else None
        )

    phase = wait_until("the pod to finish", finished, timeout=120)
    logs = kubectl.run("logs", "-n", namespace, "asks-api", check=False).stdout
    assert phase == "Succeeded", logs
    version = kubectl.json("version")["serverVersion"]["gitVersion"]
    assert logs.strip() == f"apiserver {version}"
