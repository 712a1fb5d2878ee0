"""Thin Kubernetes adapter: server-side apply, reads, pod deletion (the kubernetes client)."""

from __future__ import annotations

import base64
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

FIELD_MANAGER = "walletcluster-operator"
# (connect, read) seconds. Without them a request on a connection that went silent (a load balancer
# or NAT forgot it) waits forever, and the reconcile that made it holds its cluster's lock.
TIMEOUT = (10, 30)


class Kube:
    def __init__(self) -> None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self.api = client.ApiClient()
        self.dynamic = DynamicClient(self.api)
        self.core = client.CoreV1Api(self.api)

    def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply with force: our fields are ours; a hand edit of them is undone."""
        resource = self.dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        resource.server_side_apply(
            body=manifest,
            name=manifest["metadata"]["name"],
            namespace=manifest["metadata"]["namespace"],
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            _request_timeout=TIMEOUT,
        )

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        try:
            return dict(resource.get(name=name, namespace=namespace, _request_timeout=TIMEOUT).to_dict())
        except NotFoundError:
            return None

    def patch_status(self, api_version: str, kind: str, name: str, namespace: str, status: dict[str, Any]) -> None:
        """A merge patch of an object's status (for what must show while a handler still runs)."""
        resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        resource.status.patch(
            body={"status": status},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            _request_timeout=TIMEOUT,
        )

    def secret_value(self, name: str, namespace: str, key: str) -> str | None:
        data = self.secret_data(name, namespace) or {}
        return data[key].decode() if key in data else None

    def secret_data(self, name: str, namespace: str) -> dict[str, bytes] | None:
        """A Secret's data, decoded; None if there is no such Secret."""
        secret = self.get("v1", "Secret", name, namespace)
        if secret is None:
            return None
        return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}

    def pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
        return [
            self.api.sanitize_for_serialization(p)
            for p in self.core.list_namespaced_pod(
                namespace, label_selector=label_selector, _request_timeout=TIMEOUT
            ).items
        ]

    def log_tail(self, name: str, namespace: str, container: str) -> str:
        """The last line a container wrote ("" if none, or if it cannot be read)."""
        try:
            text = self.core.read_namespaced_pod_log(
                name, namespace, container=container, tail_lines=1, _request_timeout=TIMEOUT
            )
        except client.ApiException:
            return ""
        return str(text).strip()

    def delete_pod(self, name: str, namespace: str) -> None:
        self.core.delete_namespaced_pod(name, namespace, _request_timeout=TIMEOUT)
