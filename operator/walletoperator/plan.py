"""The operator's decisions, as a pure function of what it observed.

Each reconcile takes at most one step (add a member, remove one, move leadership, replace one
pod). Everything is re-derived from the cluster each time, so an operator that restarts
mid-way simply observes where things are and continues: no step is lost or done twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnosis import Problem, summary
from .spec import Spec


@dataclass(frozen=True)
class PodView:
    ordinal: int
    name: str
    running: bool  # the container has started (it can be reached)
    ready: bool  # /readyz passed: it knows a leader with a quorum
    current: bool  # runs the configuration the spec asks for (config hash matches)
    raft_address: str
    ip: str | None = None


@dataclass(frozen=True)
class RaftView:
    """What the leader says (None when no node reports a leader)."""

    leader: str  # pod name of the leader
    term: int
    commit_index: int
    applied_index: int
    members: tuple[str, ...]  # raft addresses


@dataclass(frozen=True)
class Observed:
    statefulset_exists: bool
    statefulset_pods: int
    members_arg: int  # the --replicas the pod template currently carries
    pods: tuple[PodView, ...]
    raft: RaftView | None
    problems: tuple[Problem, ...] = ()  # why pods or members are not coming up (diagnosis.py)
    restoring: bool = False  # spec.bootstrap.recovery has not yet given a leader


@dataclass(frozen=True)
class Action:
    kind: str  # add_member | remove_member | transfer_leadership | delete_pod
    target: str  # raft address or pod name
    reason: str
    member: int | None = None  # add_member: the member's id (its pod ordinal)


@dataclass(frozen=True)
class Condition:
    """One status condition, in words `kubectl describe wc` shows: a CamelCase reason and a
    sentence that names what is wrong (which members, which step)."""

    ok: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    pods: int
    members_arg: int
    action: Action | None
    phase: str
    conditions: dict[str, Condition] = field(default_factory=dict)


def decide(spec: Spec, seen: Observed, address_of: dict[int, str]) -> Plan:
    if not seen.statefulset_exists:
        if spec.recovery is not None:
            # One founding member, restored; the others join it one at a time (scaling up, below).
            restoring = ("Restoring", f"restoring member 0 from the backup (target {spec.recovery.target})")
            return Plan(1, 1, None, "Restoring", _conditions(spec, seen, restoring))
        return Plan(
            spec.replicas,
            spec.replicas,
            None,
            "Creating",
            _conditions(spec, seen, ("Creating", "creating the members")),
        )
    if seen.raft is None:
        phase = "QuorumLost" if any(p.running for p in seen.pods) and seen.members_arg > 1 else "Creating"
        if seen.restoring:
            phase = "Restoring"  # the founding member is restoring (or starting on its restored store)
        return Plan(
            seen.statefulset_pods,
            seen.members_arg,
            None,
            phase,
            _conditions(spec, seen, ("WaitingForLeader", "waiting for the members to elect a leader")),
        )
    members = len(seen.raft.members)
    by_ordinal = {p.ordinal: p for p in seen.pods}
    leader = next((p for p in seen.pods if p.name == seen.raft.leader), None)
    healthy = all(by_ordinal.get(i) is not None and by_ordinal[i].ready for i in range(members))

    if members < spec.replicas:
        joining = by_ordinal.get(members)
        action = None
        if joining is not None and joining.running and healthy:
            action = Action("add_member", address_of[members], f"scaling up to {spec.replicas}", member=members)
        return Plan(
            max(seen.statefulset_pods, members + 1),
            members,
            action,
            "Scaling",
            _conditions(spec, seen, ("Scaling", f"adding member {members} (scaling to {spec.replicas})")),
        )
    if members > spec.replicas:
        victim = members - 1
        if leader is not None and leader.ordinal == victim:
            action = Action("transfer_leadership", "", f"member {victim} leaves; it leads")
        else:
            action = Action("remove_member", address_of[victim], f"scaling down to {spec.replicas}")
        return Plan(
            members,
            members,
            action if healthy else None,
            "Scaling",
            _conditions(spec, seen, ("Scaling", f"removing member {victim} (scaling to {spec.replicas})")),
        )

    outdated = [p for p in sorted(seen.pods, key=lambda p: p.ordinal) if not p.current and p.ordinal < members]
    if outdated:
        if not healthy:
            waiting = ("Upgrading", "waiting for every member to be ready before rolling the next pod")
            return Plan(members, members, None, "Upgrading", _conditions(spec, seen, waiting))
        followers = [p for p in outdated if leader is None or p.name != leader.name]
        if followers:
            action = Action("delete_pod", followers[0].name, "rolling to the new configuration (followers first)")
        else:
            action = Action("transfer_leadership", "", "the leader is the last pod to roll")
        rolling = ("Upgrading", f"rolling {len(outdated)} pod(s) to the new configuration")
        return Plan(members, members, action, "Upgrading", _conditions(spec, seen, rolling))
    phase = "Running" if healthy else "Degraded"
    return Plan(members, members, None, phase, _conditions(spec, seen, None))


def _conditions(spec: Spec, seen: Observed, progress: tuple[str, str] | None) -> dict[str, Condition]:
    """Ready, Available, Progressing and QuorumLost; `progress` is (reason, message) of the work under way."""
    ready = [p for p in seen.pods if p.ready]
    not_ready = sorted(p.name for p in seen.pods if not p.ready)
    missing = spec.replicas - len(seen.pods)
    counted = f"{len(ready)}/{spec.replicas} members ready"
    if not_ready:
        counted += f"; not ready: {', '.join(not_ready)}"
    if missing > 0:
        counted += f"; {missing} pod(s) missing"
    raft = seen.raft
    running = [p for p in seen.pods if p.running]
    lost = raft is None and seen.statefulset_exists and bool(running)
    # Why pods or members are not coming up (diagnosis.py): the first cause names the reason.
    why = f": {summary(seen.problems)}" if seen.problems else ""
    cause = seen.problems[0].reason if seen.problems else None
    if raft is not None and len(ready) >= spec.replicas and progress is None:
        ready_condition = Condition(True, "AllMembersReady", counted)
    else:
        ready_reason = cause or ("NoLeader" if raft is None else progress[0] if progress else "MembersNotReady")
        ready_condition = Condition(False, ready_reason, counted + why)
    return {
        "Ready": ready_condition,
        "Available": Condition(True, "LeaderElected", f"{raft.leader} leads term {raft.term}; writes are accepted")
        if raft
        else Condition(
            False, cause or "NoLeader", f"no member reports a leader: writes and linearizable reads are refused{why}"
        ),
        "Progressing": Condition(True, *progress) if progress else Condition(False, "UpToDate", "nothing to do"),
        "QuorumLost": Condition(
            True,
            cause or "NoMemberReportsLeader",
            f"{len(running)} of {seen.members_arg} member pod(s) run but none reports a leader: a majority of the "
            f"members is down or cannot reach the others{why}",
        )
        if lost
        else Condition(False, "QuorumHeld" if raft else "NotStarted", "a leader is known" if raft else counted),
    }


def status_conditions(
    conditions: dict[str, Condition], previous: list[dict[str, str]], now: str
) -> list[dict[str, str]]:
    """The status.conditions list; a condition keeps its lastTransitionTime while its status stays."""
    before = {c["type"]: c for c in previous}
    listed = []
    for kind, condition in conditions.items():
        status = "True" if condition.ok else "False"
        kept = kind in before and before[kind]["status"] == status
        listed.append(
            {
                "type": kind,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": before[kind]["lastTransitionTime"] if kept else now,
            }
        )
    return listed
