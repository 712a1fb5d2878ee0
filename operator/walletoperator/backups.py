"""Base backups the operator takes: on spec.backup.schedule (cron, UTC), and one per WalletBackup.

Either way one member uploads a consistent view of its store (POST /v1/backups on its admin port,
signed with the cluster's admin key): a ready follower, so that the leader keeps its disk and CPU
for writes, else the leader. With spec.backup.retention the same request then prunes the archive
(the node applies the policy: the operator never holds the object store's credentials). The
outcome goes into status (the WalletCluster's status.backup, the WalletBackup's status); a failure
also into a Warning Event with the object store's own words, and into the WalletCluster's
BackupFailing condition (handlers.backup_condition).
"""

from __future__ import annotations

import datetime
from typing import Any, cast

import httpx
import kopf
from croniter import CroniterBadCronError, croniter

from . import builders, metrics
from .handlers import TIME_FORMAT, admin_call, cluster_ref, kopf_now, kube, node_client, pod_ready, settle_credentials
from .spec import GROUP, VERSION, ClusterRef, Spec

BACKUPS = "walletbackups"
#: Seconds one base backup may take (10M transfers: about a minute at 55 MB/s).
BACKUP_TIMEOUT = 3600


class BackupFailed(Exception):
    """Why a base backup was not taken, in words for a condition and an Event."""


def take_base_backup(ref: ClusterRef, wanted: Spec, status: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Ask a member to take a base backup (and apply retention when the spec has one): the
    member's name and its answer (the manifest, and what retention deleted)."""
    assert wanted.backup is not None
    k = kube()
    creds, issued = settle_credentials(k, ref, wanted)
    if issued:
        raise BackupFailed("the cluster's credentials are not in place yet")
    members = set(status.get("members") or [])
    ready = []
    for pod in k.pods(ref.namespace, builders.selector(ref)):
        name, ip = pod["metadata"]["name"], (pod.get("status") or {}).get("podIP")
        if name in members and ip and pod_ready(pod):
            ready.append((name == status.get("leader"), name, ip))  # followers first
    if not ready:
        raise BackupFailed("no member is ready to take it")
    _, pod, ip = min(ready)
    payload: dict[str, Any] = {}
    if wanted.backup.keep_days is not None:
        payload = {"keep_days": wanted.backup.keep_days, "keep_bases": wanted.backup.keep_bases}
    http = node_client(creds, timeout=BACKUP_TIMEOUT)
    if http is None:
        raise BackupFailed("no CA to verify the members with yet")
    try:
        answer = admin_call(http, ref, creds, pod, ip, "POST", "/v1/backups", payload or None)
    except httpx.HTTPError as exc:
        raise BackupFailed(f"{pod}: {type(exc).__name__}: {exc}") from exc
    finally:
        http.close()
    try:
        body = answer.json()
    except ValueError:
        body = {"message": answer.text[:300]}
    if answer.status_code != 200:
        raise BackupFailed(f"{pod} answered {answer.status_code}: {body.get('message') or body}")
    return pod, dict(body)


def last_backup(pod: str, taken: dict[str, Any]) -> dict[str, Any]:
    manifest = taken["backup"]
    return {
        "name": manifest["name"],
        "member": pod,
        "index": manifest["seq"],
        "auditHash": manifest["audit_hash"],
        "size": manifest["object_bytes"],
        "completedAt": kopf_now(),
    }


def _when(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=datetime.UTC)


def next_run(schedule: str, after: datetime.datetime) -> datetime.datetime:
    """The first time `schedule` (cron, UTC) fires after `after`; ValueError if it is not cron."""
    try:
        fire: datetime.datetime = croniter(schedule, after).get_next(datetime.datetime)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ValueError(f"backup.schedule {schedule!r} is not a cron expression: {exc}") from None
    return fire


@kopf.timer(GROUP, VERSION, "walletclusters", interval=15.0, initial_delay=5.0)
def scheduled_backup(
    body: kopf.Body, spec: kopf.Spec, name: str, namespace: str | None, uid: str, patch: kopf.Patch, **_: Any
) -> None:
    """A base backup when spec.backup.schedule is due (one, however many firings were missed)."""
    wanted = Spec.parse(dict(spec))
    if wanted.backup is None or wanted.backup.schedule is None or wanted.paused:
        return
    for outcome in ("ok", "failed"):  # present at 0, so that an alert's increase() sees the first failure
        metrics.base_backups.labels(namespace or "default", name, "schedule", outcome)
    status = body.get("status") or {}
    backup = status.get("backup") or {}
    since = _when(backup.get("lastScheduleTime") or body.metadata["creationTimestamp"])
    now = datetime.datetime.now(datetime.UTC)
    try:
        due = next_run(wanted.backup.schedule, since)
    except ValueError as exc:
        if backup.get("lastError") != str(exc):
            kopf.warn(body, reason="BackupFailed", message=str(exc))
        patch.status["backup"] = {"lastError": str(exc)}
        return
    if now < due:
        return
    if not status.get("leader") and status.get("phase") in (None, "Creating", "Restoring"):
        return  # not up yet: the backup is taken once it is
    ref = cluster_ref(name, namespace, uid, spec)
    patch.status["backup"] = {"lastScheduleTime": now.strftime(TIME_FORMAT)}
    try:
        pod, taken = take_base_backup(ref, wanted, status)
    except BackupFailed as exc:
        metrics.base_backups.labels(ref.namespace, name, "schedule", "failed").inc()
        patch.status["backup"]["lastError"] = str(exc)
        kopf.warn(body, reason="BackupFailed", message=f"scheduled base backup: {exc}")
        return
    metrics.base_backups.labels(ref.namespace, name, "schedule", "ok").inc()
    patch.status["backup"].update(lastBackup=last_backup(pod, taken), lastError=None)
    kopf.info(body, reason="BackupTaken", message=_taken_message(pod, taken))


def _taken_message(pod: str, taken: dict[str, Any]) -> str:
    manifest, pruned = taken["backup"], taken.get("pruned")
    said = f"base backup {manifest['name']} from {pod}: entry {manifest['seq']}, {manifest['object_bytes']:,} bytes"
    if pruned and (pruned["bases"] or pruned["segments"]):
        said += f"; retention deleted {len(pruned['bases'])} base backups and {pruned['segments']} segments"
    return said


@kopf.on.resume(GROUP, VERSION, BACKUPS)
@kopf.on.create(GROUP, VERSION, BACKUPS)
def on_demand_backup(
    body: kopf.Body, spec: kopf.Spec, name: str, namespace: str | None, patch: kopf.Patch, **_: Any
) -> None:
    """A WalletBackup: one base backup of its cluster, taken once (Completed or Failed for good;
    one found Running after an operator restart is taken again)."""
    if (body.get("status") or {}).get("phase") in ("Completed", "Failed"):
        return
    namespace = namespace or "default"
    k = kube()
    started = kopf_now()
    k.patch_status(f"{GROUP}/{VERSION}", "WalletBackup", name, namespace, {"phase": "Running", "startedAt": started})
    cluster = k.get(f"{GROUP}/{VERSION}", "WalletCluster", spec["cluster"], namespace)

    def failed(why: str) -> None:
        metrics.base_backups.labels(namespace, spec["cluster"], "walletbackup", "failed").inc()
        patch.status.update(phase="Failed", startedAt=started, completedAt=kopf_now(), message=why)
        kopf.warn(body, reason="BackupFailed", message=why)
        if cluster is not None:
            k.patch_status(
                f"{GROUP}/{VERSION}", "WalletCluster", spec["cluster"], namespace, {"backup": {"lastError": why}}
            )
            kopf.warn(
                kopf.Body(cast(kopf.RawBody, cluster)), reason="BackupFailed", message=f"WalletBackup {name}: {why}"
            )

    if cluster is None:
        return failed(f"there is no WalletCluster {spec['cluster']!r} in namespace {namespace}")
    wanted = Spec.parse(dict(cluster.get("spec") or {}))
    if wanted.backup is None:
        return failed(f"WalletCluster {spec['cluster']} has no spec.backup: there is nowhere to back up to")
    meta = cluster["metadata"]
    ref = cluster_ref(meta["name"], namespace, meta["uid"], cluster.get("spec") or {})
    try:
        pod, taken = take_base_backup(ref, wanted, cluster.get("status") or {})
    except BackupFailed as exc:
        return failed(str(exc))
    metrics.base_backups.labels(namespace, spec["cluster"], "walletbackup", "ok").inc()
    done = last_backup(pod, taken)
    manifest = taken["backup"]
    patch.status.update(
        phase="Completed",
        backupName=manifest["name"],
        member=pod,
        index=manifest["seq"],
        auditHash=manifest["audit_hash"],
        size=manifest["object_bytes"],
        storeBytes=manifest["store_bytes"],
        startedAt=started,
        completedAt=done["completedAt"],
        message=_taken_message(pod, taken),
    )
    k.patch_status(
        f"{GROUP}/{VERSION}",
        "WalletCluster",
        spec["cluster"],
        namespace,
        {"backup": {"lastBackup": done, "lastError": None}},
    )
    kopf.info(body, reason="BackupTaken", message=_taken_message(pod, taken))
