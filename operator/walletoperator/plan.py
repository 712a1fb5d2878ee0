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


@dataclass(frozen=True)
class Action:
    kind: str  # add_member | remove_member | transfer_leadership | delete_pod
    target: str  # raft address or pod name
    reason: str


@dataclass(frozen=True)
class Plan:
    pods: int
    members_arg: int
    action: Action | None
    phase: str
    # type -> (status, message, reason); reason None: the type itself, or Not<type> when False
    conditions: dict[str, tuple[bool, str, str | None]] = field(default_factory=dict)


def decide(spec: Spec, seen: Observed, address_of: dict[int, str]) -> Plan:
    if not seen.statefulset_exists:
        return Plan(spec.replicas, spec.replicas, None, "Creating", _conditions(spec, seen, "creating the members"))
    if seen.raft is None:
        phase = "QuorumLost" if any(p.running for p in seen.pods) and seen.members_arg > 1 else "Creating"
        return Plan(
            seen.statefulset_pods, seen.members_arg, None, phase, _conditions(spec, seen, "waiting for a leader")
        )
    members = len(seen.raft.members)
    by_ordinal = {p.ordinal: p for p in seen.pods}
    leader = next((p for p in seen.pods if p.name == seen.raft.leader), None)
    healthy = all(by_ordinal.get(i) is not None and by_ordinal[i].ready for i in range(members))

    if members < spec.replicas:
        joining = by_ordinal.get(members)
        action = None
        if joining is not None and joining.running and healthy:
            action = Action("add_member", address_of[members], f"scaling up to {spec.replicas}")
        return Plan(
            max(seen.statefulset_pods, members + 1),
            members,
            action,
            "Scaling",
            _conditions(spec, seen, f"adding member {members}"),
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
            _conditions(spec, seen, f"removing member {victim}"),
        )

    outdated = [p for p in sorted(seen.pods, key=lambda p: p.ordinal) if not p.current and p.ordinal < members]
    if outdated:
        if not healthy:
            return Plan(members, members, None, "Upgrading", _conditions(spec, seen, "waiting for a healthy quorum"))
        followers = [p for p in outdated if leader is None or p.name != leader.name]
        if followers:
            action = Action("delete_pod", followers[0].name, "rolling to the new configuration (followers first)")
        else:
            action = Action("transfer_leadership", "", "the leader is the last pod to roll")
        return Plan(members, members, action, "Upgrading", _conditions(spec, seen, "rolling pods"))
    phase = "Running" if healthy else "Degraded"
    return Plan(members, members, None, phase, _conditions(spec, seen, ""))


def _conditions(spec: Spec, seen: Observed, progress: str) -> dict[str, tuple[bool, str, str | None]]:
    ready = sum(p.ready for p in seen.pods)
    why = f": {summary(seen.problems)}" if seen.problems else ""
    cause = seen.problems[0].reason if seen.problems else None
    all_ready = seen.raft is not None and ready >= spec.replicas and not progress
    no_leader = seen.raft is None and seen.statefulset_exists and any(p.running for p in seen.pods)
    return {
        "Ready": (
            all_ready,
            f"{ready}/{spec.replicas} members ready" + ("" if all_ready else why),
            None if all_ready else cause,
        ),
        "Available": (
            seen.raft is not None,
            "a leader accepts writes" if seen.raft else f"no leader with a quorum{why}",
            None if seen.raft else cause,
        ),
        "Progressing": (bool(progress), progress or "nothing to do", None),
        "QuorumLost": (
            no_leader,
            f"no member reports a leader{why}" if seen.raft is None else "a leader is known",
            cause if no_leader else None,
        ),
    }
