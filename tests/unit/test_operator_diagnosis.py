"""Why a cluster is not coming up: pod and node status turned into words (operator/diagnosis.py)
and into the WalletCluster's conditions. The statuses are shaped as the scheduler, the kubelet
and /v1/status write them."""

from __future__ import annotations

from typing import Any

from walletoperator.diagnosis import Problem, new_problems, peer_problems, pod_problem, summary
from walletoperator.plan import Observed, PodView, decide

from .test_operator_builders import ADDR, spec

UNBOUND = (
    "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are "
    "available: 1 Preemption is not helpful for scheduling."
)


def pod_status(name: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status}


def waiting(reason: str, message: str = "", image: str = "walletcluster/node:dev") -> dict[str, Any]:
    state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    return {"name": "node", "image": image, "state": state}


def test_an_unschedulable_pod_gives_the_schedulers_reason() -> None:
    pending = pod_status(
        "wallet-0",
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNBOUND}],
    )
    assert pod_problem(pending) == Problem("PodUnschedulable", "wallet-0", f"wallet-0 cannot be scheduled: {UNBOUND}")


def test_an_image_that_cannot_be_pulled_is_named() -> None:
    never = waiting(
        "ErrImageNeverPull", 'Container image "walletcluster/node:dev" is not present with pull policy of Never'
    )
    problem = pod_problem(pod_status("wallet-1", phase="Pending", containerStatuses=[never]))
    assert problem is not None and problem.reason == "ImagePullFailed"
    assert problem.message == (
        "wallet-1: image walletcluster/node:dev cannot be pulled: ErrImageNeverPull "
        '(Container image "walletcluster/node:dev" is not present with pull policy of Never)'
    )
    # The kubelet alternates ErrImagePull and ImagePullBackOff: one problem, one key.
    backoff = pod_problem(pod_status("wallet-1", containerStatuses=[waiting("ImagePullBackOff")]))
    assert backoff is not None and backoff.key == problem.key


def test_a_crashing_container_is_a_problem_and_a_running_pod_is_not() -> None:
    crashing = pod_problem(pod_status("wallet-2", containerStatuses=[waiting("CrashLoopBackOff", "back-off 40s")]))
    assert crashing == Problem(
        "ContainerFailing", "wallet-2", "wallet-2: container node: CrashLoopBackOff (back-off 40s)"
    )
    running = {"name": "node", "image": "x", "state": {"running": {"startedAt": "2026-11-29T20:00:00Z"}}}
    scheduled = [{"type": "PodScheduled", "status": "True"}]
    assert pod_problem(pod_status("wallet-2", conditions=scheduled, containerStatuses=[running])) is None
    assert pod_problem({"metadata": {"name": "wallet-2"}}) is None  # just created: no status yet


def member(name: str, error: str | None) -> dict[str, Any]:
    return {"name": name, "connected": error is None, "error": error}


def test_peers_that_members_cannot_resolve_or_reach() -> None:
    statuses = [
        {"name": "wallet-0", "members": [member("wallet-0", None), member("wallet-1", None)]},
        {
            "name": "wallet-2",
            "members": [
                member("wallet-0", "cannot resolve wallet-0.wallet-peers.prod.svc"),
                member("wallet-1", "cannot connect to wallet-1.wallet-peers.prod.svc (10.244.0.7:7700)"),
            ],
        },
    ]
    assert peer_problems(statuses) == [
        Problem("PeerUnresolvable", "wallet-2->wallet-0", "wallet-2: cannot resolve wallet-0.wallet-peers.prod.svc"),
        Problem(
            "PeerUnreachable",
            "wallet-2->wallet-1",
            "wallet-2: cannot connect to wallet-1.wallet-peers.prod.svc (10.244.0.7:7700)",
        ),
    ]


def test_each_problem_is_new_once_and_the_summary_is_bounded() -> None:
    problems = [Problem("PodUnschedulable", f"wallet-{i}", f"wallet-{i} cannot be scheduled") for i in range(5)]
    assert new_problems(problems, frozenset()) == problems
    assert new_problems(problems, frozenset(p.key for p in problems[:4])) == problems[4:]
    assert summary(problems) == (
        "wallet-0 cannot be scheduled; wallet-1 cannot be scheduled; wallet-2 cannot be scheduled (and 2 more)"
    )


def test_conditions_say_why_there_is_no_leader() -> None:
    pods = tuple(PodView(i, f"wallet-{i}", True, False, True, ADDR[i], f"10.0.0.{i}") for i in range(3))
    unresolvable = Problem("PeerUnresolvable", "wallet-1->wallet-0", "wallet-1: cannot resolve wallet-0.wallet-peers")
    plan = decide(spec(), Observed(True, 3, 3, pods, None, (unresolvable,)), ADDR)
    assert plan.phase == "QuorumLost"
    quorum_lost, ready = plan.conditions["QuorumLost"], plan.conditions["Ready"]
    assert quorum_lost.ok and quorum_lost.reason == "PeerUnresolvable", quorum_lost
    assert quorum_lost.message.endswith("cannot reach the others: wallet-1: cannot resolve wallet-0.wallet-peers")
    assert (ready.ok, ready.reason) == (False, "PeerUnresolvable"), ready
    assert ready.message.startswith("0/3 members ready") and ready.message.endswith(
        ": wallet-1: cannot resolve wallet-0.wallet-peers"
    ), ready


def test_conditions_of_pods_that_cannot_be_scheduled() -> None:
    pending = tuple(PodView(i, f"wallet-{i}", False, False, True, ADDR[i]) for i in range(3))
    unscheduled = tuple(
        Problem("PodUnschedulable", p.name, f"{p.name} cannot be scheduled: {UNBOUND}") for p in pending
    )
    plan = decide(spec(), Observed(True, 3, 3, pending, None, unscheduled), ADDR)
    assert plan.phase == "Creating"
    available = plan.conditions["Available"]
    assert not available.ok and available.reason == "PodUnschedulable"
    assert f"refused: wallet-0 cannot be scheduled: {UNBOUND}; wallet-1" in available.message, available
