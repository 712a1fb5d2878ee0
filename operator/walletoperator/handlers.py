"""kopf handlers: observe, decide (plan.py), apply the owned objects (builders.py), take one step.

Every handler is the same reconcile: on create, on spec changes, on operator start (resume), and
on a timer, so drift (a hand edit, a dead pod, a lost leader) is repaired within seconds.
"""

from __future__ import annotations

import datetime
import secrets
import threading
import time
from typing import Any

import httpx
import kopf

from . import builders, metrics
from .diagnosis import Problem, new_problems, peer_problems, pod_problem
from .kube import Kube
from .plan import Action, Condition, Observed, PodView, RaftView, decide, status_conditions
from .spec import GROUP, HTTP_PORT, PLURAL, VERSION, ClusterRef, Spec

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
    ref = ClusterRef(name, namespace or "default", uid)
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


def _reconcile(body: kopf.Body, spec: kopf.Spec, ref: ClusterRef, patch: kopf.Patch, logger: kopf.Logger) -> None:
    name, namespace = ref.name, ref.namespace
    wanted = Spec.parse(dict(spec))
    k = kube()
    secret_value = k.secret_value(f"{name}-secret", namespace, builders.SECRET_KEY)
    seen = observe(k, ref, wanted)
    address_of = {i: builders.raft_address(ref, i) for i in range(max(wanted.replicas, seen.statefulset_pods) + 1)}
    plan = decide(wanted, seen, address_of)
    _report(body, ref.uid, seen.problems)
    if wanted.paused:
        _status(patch, body, wanted, seen, "Paused", plan.conditions, ref)
        return
    if secret_value is None:
        secret_value = secrets.token_hex(32)
        kopf.info(body, reason="SecretCreated", message="generated the cluster secret for peer authentication")
    for manifest in builders.desired(ref, wanted, secret_value, plan.pods, plan.members_arg):
        k.apply(manifest)
    if not seen.statefulset_exists:
        kopf.info(body, reason="Created", message=f"created the owned objects and {plan.pods} members")
    if plan.action is not None:
        take(plan.action, ref, seen, secret_value, body, logger)
    _status(patch, body, wanted, seen, plan.phase, plan.conditions, ref)


def observe(k: Kube, ref: ClusterRef, wanted: Spec) -> Observed:
    sts = k.get("apps/v1", "StatefulSet", ref.name, ref.namespace)
    pods: list[PodView] = []
    statuses: list[dict[str, Any]] = []
    problems: list[Problem] = []
    template_hash = builders.config_hash(wanted)
    for pod in k.pods(ref.namespace, builders.selector(ref)):
        meta, status = pod["metadata"], pod.get("status") or {}
        ordinal = int(meta["name"].rpartition("-")[2])
        running = any("running" in (c.get("state") or {}) for c in status.get("containerStatuses") or [])
        # A terminating pod is on its way out: counting it as ready would let the next reconcile delete it again.
        ready = not meta.get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
        ip = status.get("podIP")
        current = (meta.get("annotations") or {}).get(builders.CONFIG_HASH) == template_hash
        pods.append(PodView(ordinal, meta["name"], running, ready, current, builders.raft_address(ref, ordinal), ip))
        problem = pod_problem(pod)
        if problem is not None:
            problems.append(problem)
        if running and ip:
            node_status = _node_status(ip)
            if node_status is not None:
                statuses.append(node_status)
    raft = None
    leaders = [s for s in statuses if s["role"] == "leader"]
    if leaders:
        top = max(leaders, key=lambda s: s["term"])
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
    return Observed(
        sts is not None,
        int((sts or {}).get("spec", {}).get("replicas", 0)),
        members_arg,
        tuple(sorted(pods, key=lambda p: p.ordinal)),
        raft,
        tuple(problems),
    )


def _node_status(ip: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"http://{ip}:{HTTP_PORT}/v1/status", timeout=2)
        return dict(r.json()) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _report(body: kopf.Body, uid: str, problems: tuple[Problem, ...]) -> None:
    """A Warning Event for each problem that was not there at the previous reconcile."""
    for problem in new_problems(problems, _reported.get(uid, frozenset())):
        kopf.warn(body, reason=problem.reason, message=problem.message)
    _reported[uid] = frozenset(p.key for p in problems)


def take(
    action: Action, ref: ClusterRef, seen: Observed, secret_value: str, body: kopf.Body, logger: kopf.Logger
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

    headers = {"Authorization": f"Bearer {secret_value}"}
    url = f"http://{leader.ip}:{HTTP_PORT}"
    try:
        if action.kind == "add_member":
            r = httpx.post(
                f"{url}/v1/members",
                json={"address": action.target, "member": action.member},
                headers=headers,
                timeout=15,
            )
        elif action.kind == "remove_member":
            r = httpx.delete(f"{url}/v1/members/{action.target}", headers=headers, timeout=15)
        else:
            r = httpx.post(f"{url}/v1/leadership", json={}, headers=headers, timeout=15)
    except httpx.HTTPError as exc:
        failed(f"{type(exc).__name__}: {exc}")
        return
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


def _status(
    patch: kopf.Patch,
    body: kopf.Body,
    wanted: Spec,
    seen: Observed,
    phase: str,
    conditions: dict[str, Condition],
    ref: ClusterRef,
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
        }
    )


def kopf_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
