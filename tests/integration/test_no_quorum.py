"""A node that knows there is no leader with a quorum says `503 unavailable` promptly, and means it.

`unavailable` promises that nothing was applied: the ids it was given stay unjudged (404) once the
cluster is whole again. `outcome_unknown` is kept for an entry that was proposed and whose fate is
not known; its late outcome must not be logged as an unhandled exception. The bounds here are
generous (the answer used to take 10 s and say `outcome_unknown`); `python -m bench.no_quorum`
measures the real times.
"""

from __future__ import annotations

import signal

import httpx
from bench.no_quorum import Answer, wait_healthy, write_and_read

from walletnode.localcluster import LocalCluster

from ..faults.checker import unhandled_errors
from .conftest import ClusterFactory, wait_for

PROMPT_S = 5.0


def assert_prompt_unavailable(*answers: Answer) -> None:
    for answer in answers:
        assert (answer.status, answer.error) == (503, "unavailable"), answer
        assert answer.seconds < PROMPT_S, answer


def assert_never_judged(cluster: LocalCluster, i: int, command_id: str) -> None:
    with httpx.Client(timeout=30, verify=cluster.verify) as http:
        r = http.get(f"{cluster.urls[i]}/v1/transfers/{command_id}")
    assert r.status_code == 404, r.text


def test_lone_node_answers_unavailable_promptly(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(start=False)
    cluster.start(0)
    wait_healthy(cluster, 0)
    write, read, command_id = write_and_read(cluster, 0)
    assert_prompt_unavailable(write, read)
    cluster.start(1)
    cluster.start(2)
    cluster.wait_ready(timeout=60)
    assert_never_judged(cluster, 0, command_id)


def test_survivor_of_two_sigkills_answers_unavailable_promptly(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    cluster.kill(1)
    cluster.kill(2)
    first = write_and_read(cluster, 0)  # at once: the survivor has just lost its peers
    again = write_and_read(cluster, 0)  # and once it has known it for a while
    assert_prompt_unavailable(*first[:2], *again[:2])
    cluster.start(1)
    cluster.start(2)
    cluster.wait_ready(timeout=60)
    for _, _, command_id in (first, again):
        assert_never_judged(cluster, 0, command_id)


def assert_no_unhandled_errors(cluster: LocalCluster) -> None:
    problems = [p for i in range(cluster.size) for p in unhandled_errors(f"node {i}", cluster.tail(i, 10**6))]
    assert problems == []


def test_outcome_unknown_when_followers_freeze_and_no_unhandled_exception_after(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    leader = wait_for(cluster.leader, what="a leader", diagnose=cluster.diagnose)
    followers = [i for i in range(cluster.size) if i != leader]
    for i in followers:  # frozen, not dead: their connections stay open, so the leader appends
        cluster.send_signal(i, signal.SIGSTOP)
    try:
        write, _, command_id = write_and_read(cluster, leader)
    finally:
        for i in followers:
            cluster.send_signal(i, signal.SIGCONT)
    assert (write.status, write.error) == (503, "outcome_unknown"), write
    cluster.wait_ready(timeout=60)
    wait_for(lambda: cluster.leader() is not None, what="a leader again")
    assert_no_unhandled_errors(cluster)
