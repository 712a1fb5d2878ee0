"""Pods really run on the node of `hack/k8s/up --with-node`: kubelet starts containers through
containerd, the apiserver reaches kubelet for logs and exec, CoreDNS answers for headless and
ClusterIP Services, kube-proxy forwards a ClusterIP to a pod, and all of it works again after
`hack/k8s/down` and `hack/k8s/up --with-node`."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from .fixtures import run_up
from .kube import BUSYBOX_IMAGE, HACK, Kubectl, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240, func_only=True)]

# Serves its own hostname over HTTP on 8080 (busybox httpd), so a client can tell pods apart.
# Clients use `timeout 5 wget`: this busybox (Debian 1.35.0) segfaults on `wget -T`.
SERVE_HOSTNAME = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"


def pod(name: str, command: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", command]}],
            # sh as PID 1 ignores SIGTERM: don't make namespace deletion wait 30 s for it.
            "terminationGracePeriodSeconds": 1,
        },
    }


def service(name: str, selector: dict[str, str], headless: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": selector,
        "ports": [{"name": "http", "port": 8080 if headless else 80, "targetPort": 8080}],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def pod_ready(kubectl: Kubectl, namespace: str, name: str) -> bool:
    obj = kubectl.get("pod", name, namespace)
    conditions = (obj or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def wait_ready(kubectl: Kubectl, namespace: str, name: str) -> None:
    wait_until(f"pod {name} to be Ready", lambda: pod_ready(kubectl, namespace, name))


def wait_exec(kubectl: Kubectl, namespace: str, pod: str, *command: str) -> str:
    """stdout of the first successful run of ``command`` in ``pod`` (DNS records, endpoints and
    kube-proxy rules follow a new pod within seconds, so the first tries may fail)."""
    return wait_until(
        f"{' '.join(command)} to succeed in {pod}",
        lambda: kubectl.exec(namespace, pod, *command),
    )


def test_pod_runs_and_kubelet_serves_logs_and_exec(kubectl: Kubectl, k8s_node: str, namespace: str) -> None:
    kubectl.apply(pod("hello", "echo hello from $(hostname); exec sleep 3600"), namespace)
    wait_ready(kubectl, namespace, "hello")

    running = kubectl.get("pod", "hello", namespace)
    assert running is not None
    assert running["spec"]["nodeName"] == k8s_node
    assert running["status"]["podIP"].startswith("10.244.")
    # Logs and exec go apiserver -> kubelet (TLS verified against the cluster CA) -> containerd.
    logs = wait_until(
        "the pod's log",
        lambda: kubectl.run("logs", "-n", namespace, "hello", check=False).stdout,
    )
    assert logs.strip() == "hello from hello"
    assert kubectl.exec(namespace, "hello", "hostname") == "hello\n"


def web(kubectl: Kubectl, namespace: str, replicas: int) -> None:
    """StatefulSet "web" behind the headless Service "web": pods web-<i> that serve their hostname."""
    labels = {"app": "web"}
    kubectl.apply(service("web", labels, headless=True), namespace)
    template = pod("unused", SERVE_HOSTNAME, labels)
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": template["spec"]},
        },
    }
    kubectl.apply(sts, namespace)


def test_statefulset_pods_resolve_each_other_through_headless_service(
    kubectl: Kubectl, k8s_node: str, namespace: str
) -> None:
    web(kubectl, namespace, 3)
    names = ["web-0", "web-1", "web-2"]
    for name in names:
        wait_ready(kubectl, namespace, name)
        assert kubectl.exec(namespace, name, "hostname") == f"{name}\n"

    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in kubectl.json("get", "pods", "-n", namespace)["items"]}
    # Every pod finds every other one by its stable DNS name and reaches it over the pod network.
    for client in names:
        for target in names:
            if target == client:
                continue
            fqdn = f"{target}.web.{namespace}.svc.cluster.local"
            assert ips[target] in wait_exec(kubectl, namespace, client, "nslookup", fqdn)
        url = "http://web-2.web:8080/"
        assert wait_exec(kubectl, namespace, client, "timeout", "5", "wget", "-qO-", url) == "web-2\n"


def test_cluster_ip_service_forwards_to_a_pod(kubectl: Kubectl, k8s_node: str, namespace: str) -> None:
    kubectl.apply(pod("server", SERVE_HOSTNAME, {"app": "server"}), namespace)
    svc = kubectl.apply(service("front", {"app": "server"}, headless=False), namespace)
    cluster_ip = svc["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.96.")
    kubectl.apply(pod("client", "exec sleep 3600"), namespace)
    wait_ready(kubectl, namespace, "server")
    wait_ready(kubectl, namespace, "client")

    # kube-proxy's rules send the ClusterIP's port 80 to the pod's 8080; CoreDNS names it.
    for url in (f"http://{cluster_ip}/", "http://front/", f"http://front.{namespace}.svc/"):
        assert wait_exec(kubectl, namespace, "client", "timeout", "5", "wget", "-qO-", url) == "server\n"


def test_after_down_and_up_old_pods_and_dns_work_again(kubectl: Kubectl, k8s_node: str, namespace: str) -> None:
    """The pods of before the restart (CoreDNS among them) come back with a network, so that within
    60 s of `up` a new pod resolves a Service and a StatefulSet pod's headless name, and reaches it."""
    web(kubectl, namespace, 1)
    wait_ready(kubectl, namespace, "web-0")
    # What the fault tests do on the same machine: `ip netns add` bind-mounts /run/netns onto itself
    # (the first time), hiding the network namespaces mounted there before; containerd then could not
    # remove those pods' sandboxes, and kubelet kept them, with no network, after `up`.
    probe = f"wc-test-{namespace[-6:]}"
    for step in ("add", "delete"):
        subprocess.run(["ip", "netns", step, probe], check=True, capture_output=True, timeout=30)
    down = subprocess.run([str(HACK / "down")], capture_output=True, text=True, timeout=600)
    assert down.returncode == 0, down.stderr[-3000:]
    run_up("--with-node")
    restarted = time.monotonic()

    kubectl.apply(pod("client", "exec sleep 3600"), namespace)
    fqdn = f"web-0.web.{namespace}.svc.cluster.local"
    checks = [
        ("nslookup", "kubernetes.default.svc.cluster.local"),
        ("nslookup", fqdn),
        ("timeout", "5", "wget", "-qO-", "http://web-0.web:8080/"),
    ]

    def all_pass() -> bool:
        return all(kubectl.exec(namespace, "client", *check) is not None for check in checks)

    wait_until("a new pod to resolve and reach a pod of before the restart", all_pass, timeout=60)
    print(f"names resolved and web-0 reached {time.monotonic() - restarted:.1f}s after up")
