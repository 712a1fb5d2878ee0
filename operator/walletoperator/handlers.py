"""kopf handlers: observe, decide (plan.py), apply the owned objects (builders.py), take one step.

Every handler is the same reconcile: on create, on spec changes, on operator start (resume), and
on a timer, so drift (a hand edit, a dead pod, a lost leader) is repaired within seconds.
"""

from __future__ import annotations

import datetime
import json
import secrets
import threading
import time
from typing import Any

import httpx
import kopf

from walletnode.admin_auth import authorization
from walletnode.tls import client_context

from . import builders, credentials, metrics
from .credentials import Credentials
from .diagnosis import Problem, new_problems, peer_problems, pod_problem, restore_problem, restore_running
from .kube import Kube
from .plan import Action, Condition, Observed, PodView, RaftView, decide, status_conditions
from .spec import ADMIN_PORT, GROUP, HTTP_PORT, PLURAL, RESTORE_CONTAINER, VERSION, ClusterRef, Spec

_kube: Kube | None = None
# kopf runs timers concurrently with change handlers; one reconcile per cluster at a time.
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
# Per cluster, the problems already told in an Event (each is told once while it lasts).
_reported: dict[str, frozenset[tuple[str, str]]] = {}


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = 20  # Events for every step (INFO and up)
    # A standby takes over this long after the active operator's last keep-alive (kopf's default: 60 s).
    settings.peering.lifetime = 15
    settings.persistence.finalizer = f"{GROUP}/operator"
    # A deletion that arrives while the timer's reconcile runs (in a thread kopf cannot cancel) waits
    # for it; kopf then looks again after this long. Its default, 60 s, made `kubectl delete` hang.
    settings.background.cancellation_polling = 1
    # kopf's own requests (status patches, events, peering) on a silent connection: 5 minutes by default.
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # A failed reconcile (say, a request that timed out) is tried again as soon as the timer would run it.
    settings.execution.default_backoff = 5
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )


@kopf.on.startup()
async def serve_liveness_and_metrics(memo: kopf.Memo, **_: Any) -> None:
    """The liveness endpoint (`--liveness`) and /metrics on its port (see metrics.py)."""
    if memo.get("liveness"):
        memo["server"] = await metrics.serve(memo["liveness"])


@kopf.on.cleanup()
async def stop_serving(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("server") is not None:
        await memo["server"].cleanup()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.timer(GROUP, VERSION, PLURAL, interval=3.0, initial_delay=1.0)
def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    uid: str,
    patch: kopf.Patch,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    with _locks_guard:
        lock = _locks.setdefault(uid, threading.Lock())
    ref = cluster_ref(name, namespace, uid, spec)
    with lock:
        started = time.perf_counter()
        try:
            _reconcile(body, spec, ref, patch, logger)
        except Exception as exc:
            metrics.reconcile_errors.labels(ref.namespace, ref.name, type(exc).__name__).inc()
            kopf.warn(body, reason="ReconcileFailed", message=f"{type(exc).__name__}: {exc} (retrying in seconds)")
            raise
        finally:
            metrics.reconcile_seconds.labels(ref.namespace, ref.name).observe(time.perf_counter() - started)


def cluster_ref(name: str, namespace: str | None, uid: str, spec: Any) -> ClusterRef:
    return ClusterRef(name, namespace or "default", uid, restored=bool((spec.get("bootstrap") or {}).get("recovery")))


def _reconcile(body: kopf.Body, spec: kopf.Spec, ref: ClusterRef, patch: kopf.Patch, logger: kopf.Logger) -> None:
    name, namespace = ref.name, ref.namespace
    wanted = Spec.parse(dict(spec))
    k = kube()
    secret_value = k.secret_value(f"{name}-secret", namespace, builders.SECRET_KEY)
    creds, issued = settle_credentials(k, ref, wanted)
    before = body.get("status") or {}
    restoring = wanted.recovery is not None and (before.get("recovery") or {}).get("phase") != "Recovered"
    seen, node_keys, archive = observe(k, ref, wanted, creds, restoring)
    if restoring and seen.raft is not None:
        # Member 0 restored, checked its audit hash and leads: from now on no pod restores again
        # (a member that loses its volume is sent the store, like any other).
        restoring = False
        patch.status["recovery"] = {**recovery_status(wanted), "phase": "Recovered", "recoveredAt": kopf_now()}
        kopf.info(body, reason="Recovered", message=f"member 0 restored (target {recovery_status(wanted)['target']})")
    elif restoring:
        patch.status["recovery"] = {**recovery_status(wanted), "phase": "Restoring"}
    address_of = {i: builders.raft_address(ref, i) for i in range(max(wanted.replicas, seen.statefulset_pods) + 1)}
    plan = decide(wanted, seen, address_of)
    conditions = dict(plan.conditions)
    backup_problems: list[Problem] = []
    if wanted.backup is not None:
        patch.status["backup"] = archive_status(archive)
        conditions["BackupFailing"], backup_problems = backup_condition(archive, before.get("backup") or {})
    _report(body, ref.uid, (*seen.problems, *backup_problems))
    if wanted.paused:
        _status(patch, body, wanted, seen, "Paused", conditions, ref, creds, node_keys)
        return
    if secret_value is None:
        secret_value = secrets.token_hex(32)
        kopf.info(body, reason="SecretCreated", message="generated the cluster secret for peer authentication")
    for manifest in builders.desired(ref, wanted, secret_value, plan.pods, plan.members_arg, creds, restoring):
        k.apply(manifest)
    for note in issued:  # after the apply: an Event tells what is in place (never a key)
        kopf.info(body, reason="CredentialsIssued", message=note)
    if not seen.statefulset_exists:
        kopf.info(body, reason="Created", message=f"created the owned objects and {plan.pods} members")
    if plan.action is not None:
        take(plan.action, ref, seen, creds, body, logger)
    _status(patch, body, wanted, seen, plan.phase, conditions, ref, creds, node_keys)


def settle_credentials(k: Kube, ref: ClusterRef, wanted: Spec) -> tuple[Credentials, list[str]]:
    """The cluster's credentials from its Secrets, and what would have to be issued (credentials.settle)."""
    return credentials.settle(
        ref,
        wanted,
        k.secret_data(builders.ca_secret_name(ref), ref.namespace),
        k.secret_data(builders.tls_secret_name(ref), ref.namespace),
        k.secret_data(builders.admin_secret_name(ref), ref.namespace),
        datetime.datetime.now(datetime.UTC),
    )


def pod_ready(pod: dict[str, Any]) -> bool:
    """Ready, and not on its way out (a terminating pod counted as ready would be deleted again)."""
    status = pod.get("status") or {}
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
    )


def recovery_status(wanted: Spec) -> dict[str, Any]:
    assert wanted.recovery is not None
    source = wanted.recovery.source
    return {"target": wanted.recovery.target, "source": f"{source.endpoint}/{source.bucket}/{source.prefix}"}


def archive_status(archive: dict[str, Any] | None) -> dict[str, Any]:
    """The leader's view of the continuous archive (status.backup; the base backups' fields are
    written by backups.py)."""
    archive = archive or {}
    return {
        "archivedIndex": archive.get("archived_seq"),
        "archiveLagEntries": archive.get("lag_entries"),
        "archiveError": archive.get("error"),
    }


def backup_condition(archive: dict[str, Any] | None, backup: dict[str, Any]) -> tuple[Condition, list[Problem]]:
    """BackupFailing: the leader cannot archive, or the last base backup failed (with the object
    store's own words); each is also a Warning Event, once while it lasts."""
    archive_error = (archive or {}).get("error")
    base_error = backup.get("lastError")
    if archive_error:
        message = f"archiving to the object store fails: {archive_error}"
        return Condition(True, "ArchiveFailing", message), [Problem("ArchiveFailing", "archive", message)]
    if base_error:
        message = f"the last base backup failed: {base_error}"
        return Condition(True, "BaseBackupFailed", message), []  # its Event was told when it failed
    if archive is None:
        return Condition(False, "NotArchivingYet", "no leader reports the archive yet"), []
    last = (backup.get("lastBackup") or {}).get("name")
    said = f"archived to entry {archive.get('archived_seq')}" + (f"; last base backup {last}" if last else "")
    return Condition(False, "BackupsWork", said), []


def node_client(creds: Credentials, timeout: float = 2) -> httpx.Client | None:
    """HTTPS to the nodes, trusting the cluster's CA only; None while no CA is known (cert-manager
    has not issued yet)."""
    if creds.ca_bundle is None:
        return None
    return httpx.Client(verify=client_context(None, creds.ca_bundle), timeout=timeout)


def observe(
    k: Kube, ref: ClusterRef, wanted: Spec, creds: Credentials, restoring: bool = False
) -> tuple[Observed, dict[str, str], dict[str, Any] | None]:
    """What is there, each answering member's identity key (by pod name), and the leader's report
    on the archive (None: no leader, or no backups)."""
    sts = k.get("apps/v1", "StatefulSet", ref.name, ref.namespace)
    pods: list[PodView] = []
    statuses: list[dict[str, Any]] = []
    problems: list[Problem] = []
    template_hash = builders.config_hash(wanted)
    http = node_client(creds)
    for pod in k.pods(ref.namespace, builders.selector(ref)):
        meta, status = pod["metadata"], pod.get("status") or {}
        ordinal = int(meta["name"].rpartition("-")[2])
        running = any("running" in (c.get("state") or {}) for c in status.get("containerStatuses") or [])
        ready = pod_ready(pod)
        ip = status.get("podIP")
        current = (meta.get("annotations") or {}).get(builders.CONFIG_HASH) == template_hash
        pods.append(PodView(ordinal, meta["name"], running, ready, current, builders.raft_address(ref, ordinal), ip))
        problem = pod_problem(pod)
        if problem is None and restore_running(pod):
            problem = restore_problem(meta["name"], k.log_tail(meta["name"], ref.namespace, RESTORE_CONTAINER))
        if problem is not None:
            problems.append(problem)
        if running and ip and http is not None:
            node_status = _node_status(http, ref, meta["name"], ip)
            if node_status is not None:
                statuses.append(node_status)
    if http is not None:
        http.close()
    raft = None
    leaders = [s for s in statuses if s["role"] == "leader"]
    top = max(leaders, key=lambda s: s["term"]) if leaders else None
    if top is not None:
        raft = RaftView(
            top["name"],
            top["term"],
            top["commit_index"],
            top["applied_index"],
            tuple(m["raft_address"] for m in top["members"]),
        )
    if raft is None or not all(p.ready for p in pods):
        problems.extend(peer_problems(statuses))
    members_arg = wanted.replicas
    if sts is not None:
        args = sts["spec"]["template"]["spec"]["containers"][0].get("args", [])
        if "--replicas" in args:
            members_arg = int(args[args.index("--replicas") + 1])
    observed = Observed(
        sts is not None,
        int((sts or {}).get("spec", {}).get("replicas", 0)),
        members_arg,
        tuple(sorted(pods, key=lambda p: p.ordinal)),
        raft,
        tuple(problems),
        restoring,
    )
    archive = top.get("archive") if top is not None else None
    return observed, {str(s["name"]): str(s["node_key"]) for s in statuses if "node_key" in s}, archive


def _node_status(http: httpx.Client, ref: ClusterRef, pod: str, ip: str) -> dict[str, Any] | None:
    """The pod's /v1/status over HTTPS to its IP, its certificate checked for its DNS name."""
    try:
        r = http.get(
            f"https://{ip}:{HTTP_PORT}/v1/status",
            extensions={"sni_hostname": credentials.pod_host(ref, pod)},
        )
        return dict(r.json()) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _report(body: kopf.Body, uid: str, problems: tuple[Problem, ...]) -> None:
    """A Warning Event for each problem that was not there at the previous reconcile."""
    for problem in new_problems(problems, _reported.get(uid, frozenset())):
        kopf.warn(body, reason=problem.reason, message=problem.message)
    _reported[uid] = frozenset(p.key for p in problems)


def take(
    action: Action, ref: ClusterRef, seen: Observed, creds: Credentials, body: kopf.Body, logger: kopf.Logger
) -> None:
    """One step, through the leader's admin API (Raft changes membership one member at a time)."""
    leader = next((p for p in seen.pods if seen.raft and p.name == seen.raft.leader), None)
    if action.kind == "delete_pod":
        kube().delete_pod(action.target, ref.namespace)
        metrics.steps.labels(ref.namespace, ref.name, action.kind, "ok").inc()
        kopf.info(body, reason="PodReplaced", message=f"deleted {action.target}: {action.reason}")
        return
    if leader is None or leader.ip is None:
        return

    def failed(why: str) -> None:
        metrics.steps.labels(ref.namespace, ref.name, action.kind, "failed").inc()
        message = f"{action.kind} {action.target or ''} through the leader {leader.name} failed: {why} (will retry)"
        logger.warning(message)
        kopf.warn(body, reason="StepFailed", message=message)

    if action.kind == "add_member":
        method, path, payload = "POST", "/v1/members", {"address": action.target, "member": action.member}
    elif action.kind == "remove_member":
        method, path, payload = "DELETE", f"/v1/members/{action.target}", None
    else:
        method, path, payload = "POST", "/v1/leadership", {}
    http = node_client(creds, timeout=15)
    if http is None:
        failed("no CA to verify the members with yet")
        return
    try:
        r = admin_call(http, ref, creds, leader.name, leader.ip, method, path, payload)
    except httpx.HTTPError as exc:
        failed(f"{type(exc).__name__}: {exc}")
        return
    finally:
        http.close()
    if r.status_code == 200:
        metrics.steps.labels(ref.namespace, ref.name, action.kind, "ok").inc()
        reason = {
            "add_member": "MemberAdded",
            "remove_member": "MemberRemoved",
            "transfer_leadership": "LeadershipTransferred",
        }[action.kind]
        kopf.info(body, reason=reason, message=f"{action.target or leader.name}: {action.reason}")
    else:
        failed(f"the node answered {r.status_code}: {r.text[:200]}")


def admin_call(
    http: httpx.Client,
    ref: ClusterRef,
    creds: Credentials,
    pod: str,
    ip: str,
    method: str,
    path: str,
    payload: Any,
) -> httpx.Response:
    """One admin request to `pod`'s admin port, signed with the admin key for that pod alone."""
    content = json.dumps(payload).encode() if payload is not None else b""
    signed = authorization(creds.admin, builders.cluster_id(ref), pod, method, path, content)
    return http.request(
        method,
        f"https://{ip}:{ADMIN_PORT}{path}",
        content=content,
        headers={"Authorization": signed, "Content-Type": "application/json"},
        extensions={"sni_hostname": credentials.pod_host(ref, pod)},
    )


def _tls_status(ref: ClusterRef, wanted: Spec, creds: Credentials) -> dict[str, Any]:
    issuer = wanted.issuer_ref
    return {
        "caConfigMap": builders.ca_config_map_name(ref) if creds.ca_bundle is not None else None,
        "secretName": builders.tls_secret_name(ref),
        "issuer": f"cert-manager {issuer['kind']}/{issuer['name']}" if issuer else "operator",
        "notAfter": creds.not_after.strftime(TIME_FORMAT) if creds.not_after else None,
    }


def _status(
    patch: kopf.Patch,
    body: kopf.Body,
    wanted: Spec,
    seen: Observed,
    phase: str,
    conditions: dict[str, Condition],
    ref: ClusterRef,
    creds: Credentials,
    node_keys: dict[str, str],
) -> None:
    raft = seen.raft
    before = body.get("status") or {}
    metrics.phases.set(ref.namespace, ref.name, phase)
    if phase in ("QuorumLost", "Degraded") and before.get("phase") != phase:
        trouble = conditions["QuorumLost" if phase == "QuorumLost" else "Ready"]
        kopf.warn(body, reason=phase, message=trouble.message)
    patch.status.update(
        {
            "phase": phase,
            "replicas": len(raft.members) if raft else seen.statefulset_pods,
            "readyReplicas": sum(p.ready for p in seen.pods),
            "leader": raft.leader if raft else None,
            "term": raft.term if raft else None,
            "commitIndex": raft.commit_index if raft else None,
            "appliedIndex": raft.applied_index if raft else None,
            "members": [p.name for p in seen.pods if raft and p.raft_address in raft.members],
            "observedGeneration": body.metadata.get("generation"),
            "selector": ",".join(f"{k}={v}" for k, v in builders.selector(ref).items()),
            "conditions": status_conditions(conditions, before.get("conditions") or [], kopf_now()),
            "tls": _tls_status(ref, wanted, creds),
            # Kept for members that do not answer now: a key is the member's for as long as its volume.
            "nodeKeys": {**(before.get("nodeKeys") or {}), **node_keys},
        }
    )


#: Times in status, as Kubernetes writes them (RFC 3339, UTC, whole seconds).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def kopf_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime(TIME_FORMAT)
