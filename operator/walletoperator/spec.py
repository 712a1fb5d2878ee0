"""The WalletCluster spec as a typed value (defaults come from the CRD; these mirror them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GROUP = "ledger.walletcluster.io"
VERSION = "v1alpha1"
PLURAL = "walletclusters"
RAFT_PORT = 7700
HTTP_PORT = 8700
ADMIN_PORT = 8701
#: The init container that restores member 0 of a cluster made by spec.bootstrap.recovery.
RESTORE_CONTAINER = "restore"


@dataclass(frozen=True)
class ClusterRef:
    name: str
    namespace: str
    uid: str
    #: Made by spec.bootstrap.recovery: a new ledger, so a signing domain of its own (builders.cluster_id).
    restored: bool = False


def peer_service_name(ref: ClusterRef) -> str:
    return f"{ref.name}-peers"


@dataclass(frozen=True)
class Location:
    """An S3-compatible object store and a prefix in one of its buckets; the credentials (and the
    CA to verify it with) come from the user's Secrets, which only the pods read."""

    endpoint: str
    bucket: str
    prefix: str  # "": the cluster's own default (its cluster id)
    region: str
    credentials_secret: str
    access_key_id_key: str
    secret_access_key_key: str
    ca_secret: str | None
    ca_key: str

    @classmethod
    def parse(cls, where: dict[str, Any]) -> Location:
        credentials = where["credentialsSecret"]
        ca = where.get("caSecret") or {}
        return cls(
            endpoint=where["endpoint"],
            bucket=where["bucket"],
            prefix=where.get("prefix", ""),
            region=where.get("region", "us-east-1"),
            credentials_secret=credentials["name"],
            access_key_id_key=credentials.get("accessKeyIdKey", "AWS_ACCESS_KEY_ID"),
            secret_access_key_key=credentials.get("secretAccessKeyKey", "AWS_SECRET_ACCESS_KEY"),
            ca_secret=ca.get("name"),
            ca_key=ca.get("key", "ca.crt"),
        )


@dataclass(frozen=True)
class BackupSpec:
    """spec.backup: where the nodes archive, when the operator takes base backups and what it keeps
    (docs/operations.md, "Backups and restore")."""

    location: Location
    archive_every_s: int
    schedule: str | None  # cron; None: base backups only on demand (WalletBackup)
    keep_days: float | None  # retention; None: nothing is ever deleted
    keep_bases: int

    @classmethod
    def parse(cls, backup: dict[str, Any]) -> BackupSpec:
        retention = backup.get("retention") or {}
        return cls(
            location=Location.parse(backup),
            archive_every_s=int(backup.get("archiveEverySeconds", 2)),
            schedule=backup.get("schedule"),
            keep_days=float(retention["days"]) if "days" in retention else None,
            keep_bases=int(retention.get("bases", 1)),
        )


@dataclass(frozen=True)
class RecoverySpec:
    """spec.bootstrap.recovery: the new cluster's first member is restored from `source` up to the
    target (latest, an entry, or a time); the others join it and are sent its store."""

    source: Location
    target: str  # "latest", an entry number, or an ISO 8601 time (walletctl restore --target)

    @classmethod
    def parse(cls, recovery: dict[str, Any]) -> RecoverySpec:
        target = recovery.get("target") or {}
        if "index" in target:
            text = str(int(target["index"]))
        elif "time" in target:
            text = str(target["time"])
        else:
            text = "latest"
        return cls(source=Location.parse(recovery["source"]), target=text)


@dataclass(frozen=True)
class Spec:
    replicas: int = 3
    image: str = "walletcluster/node:dev"
    image_pull_policy: str = "IfNotPresent"
    resources: dict[str, Any] = field(default_factory=dict)
    storage_size: str = "1Gi"
    storage_class: str | None = None
    reclaim_policy: str = "Retain"
    minters: tuple[str, ...] = ()
    heartbeat_ms: int = 100
    election_timeout_ms: int = 1000
    service_type: str = "ClusterIP"
    service_port: int = HTTP_PORT
    affinity: dict[str, Any] | None = None
    tolerations: tuple[dict[str, Any], ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    certificate_days: int = 90
    renew_before_days: int = 7
    #: A cert-manager issuer ({name, kind, group}) that issues the server certificate instead of the operator's CA.
    issuer_ref: dict[str, str] | None = None
    backup: BackupSpec | None = None
    recovery: RecoverySpec | None = None

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Spec:
        storage = spec.get("storage") or {}
        raft = spec.get("raft") or {}
        service = spec.get("service") or {}
        tls = spec.get("tls") or {}
        issuer = tls.get("issuerRef")
        return cls(
            replicas=int(spec.get("replicas", 3)),
            image=spec.get("image", cls.image),
            image_pull_policy=spec.get("imagePullPolicy", cls.image_pull_policy),
            resources=dict(spec.get("resources") or {}),
            storage_size=storage.get("size", cls.storage_size),
            storage_class=storage.get("storageClassName"),
            reclaim_policy=storage.get("reclaimPolicy", cls.reclaim_policy),
            minters=tuple(spec.get("minters") or ()),
            heartbeat_ms=int(raft.get("heartbeatMs", cls.heartbeat_ms)),
            election_timeout_ms=int(raft.get("electionTimeoutMs", cls.election_timeout_ms)),
            service_type=service.get("type", cls.service_type),
            service_port=int(service.get("port", cls.service_port)),
            affinity=spec.get("affinity"),
            tolerations=tuple(spec.get("tolerations") or ()),
            node_selector=dict(spec.get("nodeSelector") or {}),
            paused=bool(spec.get("paused", False)),
            certificate_days=int(tls.get("certificateDays", cls.certificate_days)),
            renew_before_days=int(tls.get("renewBeforeDays", cls.renew_before_days)),
            issuer_ref=(
                {
                    "name": issuer["name"],
                    "kind": issuer.get("kind", "Issuer"),
                    "group": issuer.get("group", "cert-manager.io"),
                }
                if issuer
                else None
            ),
            backup=BackupSpec.parse(spec["backup"]) if spec.get("backup") else None,
            recovery=RecoverySpec.parse(recovery)
            if (recovery := (spec.get("bootstrap") or {}).get("recovery"))
            else None,
        )
