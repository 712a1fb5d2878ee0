"""Pure builders: a WalletCluster (and what the operator knows) -> the manifests it owns.

No I/O: the same inputs give the same objects, so applying them twice changes nothing and a
hand edit of an owned field is reverted by the next apply.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any

from . import credentials
from .credentials import Credentials
from .spec import (
    ADMIN_PORT,
    GROUP,
    HTTP_PORT,
    RAFT_PORT,
    RESTORE_CONTAINER,
    VERSION,
    ClusterRef,
    Location,
    Spec,
    peer_service_name,
)

SECRET_KEY = "secret"
TLS_DIR = "/etc/walletcluster/tls"
ADMIN_PUBLIC_KEY = "admin-public-key"  # in the ConfigMap: the nodes' half of the admin key
CA_BUNDLE = "ca.crt"  # in the published CA ConfigMap
#: Bumped when the pod template changes in a way running pods must be replaced for.
TEMPLATE_VERSION = 2
Manifest = dict[str, Any]


def labels(ref: ClusterRef) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "walletcluster",
        "app.kubernetes.io/instance": ref.name,
        "app.kubernetes.io/component": "ledger",
        "app.kubernetes.io/managed-by": "walletcluster-operator",
    }


def selector(ref: ClusterRef) -> dict[str, str]:
    return {"app.kubernetes.io/name": "walletcluster", "app.kubernetes.io/instance": ref.name}


def raft_address(ref: ClusterRef, ordinal: int) -> str:
    """How members dial pod `ordinal` (the node derives the same from its hostname)."""
    return f"{ref.name}-{ordinal}.{peer_service_name(ref)}.{ref.namespace}.svc:{RAFT_PORT}"


def _meta(ref: ClusterRef, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ref.namespace,
        "labels": labels(ref),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "WalletCluster",
                "name": ref.name,
                "uid": ref.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def secret(ref: ClusterRef, value: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(ref, f"{ref.name}-secret"),
        "type": "Opaque",
        "stringData": {SECRET_KEY: value},
    }


def config_map(ref: ClusterRef, spec: Spec, creds: Credentials) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(ref, f"{ref.name}-config"),
        "data": {"minters": " ".join(spec.minters), ADMIN_PUBLIC_KEY: creds.admin_public},
    }


def ca_secret_name(ref: ClusterRef) -> str:
    return f"{ref.name}-ca"


def tls_secret_name(ref: ClusterRef) -> str:
    return f"{ref.name}-tls"


def admin_secret_name(ref: ClusterRef) -> str:
    return f"{ref.name}-admin"


def ca_config_map_name(ref: ClusterRef) -> str:
    return f"{ref.name}-ca"


def _secret(ref: ClusterRef, name: str, data: dict[str, bytes], kind: str = "Opaque") -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(ref, name),
        "type": kind,
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())},
    }


def credential_secrets(ref: ClusterRef, creds: Credentials) -> list[Manifest]:
    """The admin key and, unless cert-manager issues, the CA (both never mounted in a pod: the
    operator's alone) and the server certificate (mounted in the pods)."""
    found = [_secret(ref, admin_secret_name(ref), {credentials.ADMIN_KEY: bytes(creds.admin).hex().encode()})]
    if creds.ca is not None and creds.server is not None:
        ca = {credentials.CA_CERT: creds.ca.cert, credentials.CA_KEY: creds.ca.key}
        found.append(_secret(ref, ca_secret_name(ref), ca, "kubernetes.io/tls"))
        server = {
            credentials.SERVER_CERT: creds.server.cert,
            credentials.SERVER_KEY: creds.server.key,
            credentials.SERVER_CA: creds.ca.cert,
        }
        found.append(_secret(ref, tls_secret_name(ref), server, "kubernetes.io/tls"))
    return found


def ca_config_map(ref: ClusterRef, creds: Credentials) -> Manifest | None:
    """The CA bundle for clients (named in status.tls.caConfigMap); None until one is known."""
    if creds.ca_bundle is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(ref, ca_config_map_name(ref)),
        "data": {CA_BUNDLE: creds.ca_bundle.decode()},
    }


def certificate(ref: ClusterRef, spec: Spec) -> Manifest | None:
    """With spec.tls.issuerRef: the cert-manager Certificate for the server Secret."""
    if spec.issuer_ref is None:
        return None
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": _meta(ref, ref.name),
        "spec": {
            "secretName": tls_secret_name(ref),
            "dnsNames": credentials.server_names(ref),
            "ipAddresses": ["127.0.0.1"],
            "duration": f"{spec.certificate_days * 24}h",
            "renewBefore": f"{spec.renew_before_days * 24}h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["server auth", "digital signature", "key encipherment"],
            "issuerRef": dict(spec.issuer_ref),
        },
    }


def service_account(ref: ClusterRef) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(ref, ref.name),
        "automountServiceAccountToken": False,
    }


def peer_service(ref: ClusterRef) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ref, peer_service_name(ref)),
        "spec": {
            "clusterIP": "None",
            # Raft peers must find each other before they are Ready (readiness needs a leader).
            "publishNotReadyAddresses": True,
            "selector": selector(ref),
            "ports": [
                {"name": "raft", "port": RAFT_PORT, "targetPort": "raft"},
                {"name": "http", "port": HTTP_PORT, "targetPort": "http"},
                {"name": "admin", "port": ADMIN_PORT, "targetPort": "admin"},
            ],
        },
    }


def client_service(ref: ClusterRef, spec: Spec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ref, ref.name),
        "spec": {
            "type": spec.service_type,
            "selector": selector(ref),
            "ports": [{"name": "http", "port": spec.service_port, "targetPort": "http"}],
        },
    }


def pod_disruption_budget(ref: ClusterRef, spec: Spec) -> Manifest:
    """Voluntary evictions may never take away the Raft majority."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(ref, ref.name),
        "spec": {"minAvailable": spec.replicas // 2 + 1, "selector": {"matchLabels": selector(ref)}},
    }


OPERATOR_POD_LABELS = {"app.kubernetes.io/part-of": "walletcluster", "app.kubernetes.io/component": "operator"}


def network_policy(ref: ClusterRef) -> Manifest:
    """The Raft port only from this cluster's own pods; the admin port only from the operator's
    pods (in any namespace; the admin key's signature is what authorises, this is a second wall);
    the client API from anywhere."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(ref, ref.name),
        "spec": {
            "podSelector": {"matchLabels": selector(ref)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": selector(ref)}}],
                    "ports": [{"protocol": "TCP", "port": RAFT_PORT}],
                },
                {
                    "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": OPERATOR_POD_LABELS}}],
                    "ports": [{"protocol": "TCP", "port": ADMIN_PORT}],
                },
                {"ports": [{"protocol": "TCP", "port": HTTP_PORT}]},
            ],
        },
    }


CONFIG_HASH = f"{GROUP}/config-hash"


def config_hash(spec: Spec) -> str:
    """What a running pod must be restarted for (not the membership size: joiners handle that)."""
    relevant = [
        TEMPLATE_VERSION,
        spec.image,
        spec.image_pull_policy,
        spec.heartbeat_ms,
        spec.election_timeout_ms,
        spec.resources,
        sorted(spec.minters),
        spec.affinity,
        list(spec.tolerations),
        spec.node_selector,
        # Where the nodes archive (read at start); the schedule and retention are the operator's.
        [dataclasses.asdict(spec.backup.location), spec.backup.archive_every_s] if spec.backup else None,
    ]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def cluster_id(ref: ClusterRef) -> str:
    """The nodes' signing domain (`--cluster-id`): also what admin requests are signed for. A
    restored cluster is a new ledger: its id carries its own uid, so it never equals its source's
    (even one of the same namespace and name) and transfers signed for the source are void on it."""
    if ref.restored:
        return f"{ref.namespace}/{ref.name}@{ref.uid[:8]}"
    return f"{ref.namespace}/{ref.name}"


def node_args(ref: ClusterRef, spec: Spec, members: int) -> list[str]:
    """`members` is the committed Raft membership size: pods beyond it start as joiners."""
    return [
        "--replicas",
        str(members),
        "--service",
        peer_service_name(ref),
        "--name",
        ref.name,
        "--cluster-id",
        cluster_id(ref),
        "--raft-port",
        str(RAFT_PORT),
        "--secret-file",
        f"/etc/walletcluster/{SECRET_KEY}",
        "--tls-cert",
        f"{TLS_DIR}/{credentials.SERVER_CERT}",
        "--tls-key",
        f"{TLS_DIR}/{credentials.SERVER_KEY}",
        "--admin-http",
        f"0.0.0.0:{ADMIN_PORT}",
        "--heartbeat-ms",
        str(spec.heartbeat_ms),
        "--election-timeout-ms",
        str(spec.election_timeout_ms),
        "--join",
    ]


BACKUP_CA_DIR = "/etc/walletcluster/backup-ca"
RECOVERY_CA_DIR = "/etc/walletcluster/recovery-ca"


def location_env(where: Location, prefix: str, ca_dir: str) -> list[dict[str, Any]]:
    """An object store location as the variables `walletnode serve` and `walletctl` read; the
    credentials straight from the user's Secret, never through the operator."""
    env: list[dict[str, Any]] = [
        {"name": "WALLET_BACKUP_ENDPOINT", "value": where.endpoint},
        {"name": "WALLET_BACKUP_BUCKET", "value": where.bucket},
        {"name": "WALLET_BACKUP_PREFIX", "value": where.prefix or prefix},
        {"name": "WALLET_BACKUP_REGION", "value": where.region},
    ]
    for name, key in (
        ("AWS_ACCESS_KEY_ID", where.access_key_id_key),
        ("AWS_SECRET_ACCESS_KEY", where.secret_access_key_key),
    ):
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": where.credentials_secret, "key": key}}})
    if where.ca_secret:
        env.append({"name": "WALLET_BACKUP_CA", "value": f"{ca_dir}/{where.ca_key}"})
    return env


def _ca_volume(pod_spec: dict[str, Any], container: dict[str, Any], name: str, where: Location, path: str) -> None:
    if where.ca_secret:
        container["volumeMounts"].append({"name": name, "mountPath": path, "readOnly": True})
        pod_spec["volumes"].append({"name": name, "secret": {"secretName": where.ca_secret}})


def restore_container(ref: ClusterRef, spec: Spec, security: dict[str, Any]) -> dict[str, Any]:
    """spec.bootstrap.recovery: `walletctl restore` into member 0's empty volume, before the node
    starts. Member 0 is the new ledger's only founding member; the others join it (the operator
    adds them) and are sent its store, so every member holds the same state by construction. Any
    other pod, or a volume that already holds a ledger (a restart), passes through."""
    assert spec.recovery is not None
    return {
        "name": RESTORE_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["walletctl", "restore"],
        "args": [
            "--data-dir",
            "/data",
            "--cluster-id",
            cluster_id(ref),
            "--peers",
            raft_address(ref, 0),
            "--target",
            spec.recovery.target,
            "--for-member",
            "$(POD_NAME)",
            "--if-empty",
            # Failures are retried in place (and said in its log, which the operator reads), not by
            # the kubelet restarting it in a crash loop.
            "--retry",
        ],
        # Nothing of it is a default a user could mean for the source: the source prefix is explicit
        # or the source cluster's default (<namespace>/<name> of a cluster that was not restored).
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            *location_env(spec.recovery.source, f"{ref.namespace}/{ref.name}", RECOVERY_CA_DIR),
        ],
        # Should it exit with an error after all, its last words become the termination message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security,
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def stateful_set(ref: ClusterRef, spec: Spec, pods: int, members: int, restoring: bool = False) -> Manifest:
    """`pods` is how many pods to run now (the operator moves it one member at a time); `restoring`:
    the recovery of spec.bootstrap is not done yet (pods get the restore init container)."""
    container: dict[str, Any] = {
        "name": "node",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": node_args(ref, spec, members),
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {
                "name": "WALLET_MINTERS",
                "valueFrom": {"configMapKeyRef": {"name": f"{ref.name}-config", "key": "minters"}},
            },
            {
                "name": "WALLET_ADMIN_PUBLIC_KEY",
                "valueFrom": {"configMapKeyRef": {"name": f"{ref.name}-config", "key": ADMIN_PUBLIC_KEY}},
            },
            # For walletctl run inside the pod (`kubectl exec ... walletctl`): trust the cluster's CA.
            {"name": "WALLET_CA", "value": f"{TLS_DIR}/{credentials.SERVER_CA}"},
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT},
            {"name": "raft", "containerPort": RAFT_PORT},
            {"name": "admin", "containerPort": ADMIN_PORT},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTPS"},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTPS"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "secret", "mountPath": "/etc/walletcluster", "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        ],
    }
    if spec.resources:
        container["resources"] = spec.resources
    if spec.backup:
        container["env"] += location_env(spec.backup.location, cluster_id(ref), BACKUP_CA_DIR)
        container["env"].append({"name": "WALLET_ARCHIVE_EVERY_S", "value": str(spec.backup.archive_every_s)})
    pod_spec: dict[str, Any] = {
        "serviceAccountName": ref.name,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {"fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "secret", "secret": {"secretName": f"{ref.name}-secret"}},
            # Mounted as a directory (no subPath), so the kubelet swaps in a renewed certificate.
            {"name": "tls", "secret": {"secretName": tls_secret_name(ref)}},
        ],
    }
    if spec.backup:
        _ca_volume(pod_spec, container, "backup-ca", spec.backup.location, BACKUP_CA_DIR)
    if spec.recovery is not None and restoring:
        init = restore_container(ref, spec, container["securityContext"])
        pod_spec["initContainers"] = [init]
        _ca_volume(pod_spec, init, "recovery-ca", spec.recovery.source, RECOVERY_CA_DIR)
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    if spec.tolerations:
        pod_spec["tolerations"] = list(spec.tolerations)
    if spec.node_selector:
        pod_spec["nodeSelector"] = spec.node_selector
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage_size}},
    }
    if spec.storage_class is not None:
        claim["storageClassName"] = spec.storage_class
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(ref, ref.name),
        "spec": {
            "replicas": pods,
            "serviceName": peer_service_name(ref),
            # All members must start together: a lone pod-0 can never become Ready (no quorum).
            "podManagementPolicy": "Parallel",
            # The operator replaces pods itself: followers first, the leader last after a transfer.
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": spec.reclaim_policy,
                # A removed member's log is stale; a member added later must start empty.
                "whenScaled": "Delete",
            },
            "selector": {"matchLabels": selector(ref)},
            "template": {
                "metadata": {"labels": labels(ref), "annotations": {CONFIG_HASH: config_hash(spec)}},
                "spec": pod_spec,
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": labels(ref)}, "spec": claim}],
        },
    }


def desired(
    ref: ClusterRef,
    spec: Spec,
    secret_value: str,
    pods: int,
    members: int,
    creds: Credentials,
    restoring: bool = False,
) -> list[Manifest]:
    """Every object a WalletCluster owns, in the order they should be applied."""
    optional = [certificate(ref, spec), ca_config_map(ref, creds)]
    return [
        secret(ref, secret_value),
        *credential_secrets(ref, creds),
        *[m for m in optional if m is not None],
        config_map(ref, spec, creds),
        service_account(ref),
        peer_service(ref),
        client_service(ref, spec),
        pod_disruption_budget(ref, spec),
        network_policy(ref),
        stateful_set(ref, spec, pods, members, restoring),
    ]
