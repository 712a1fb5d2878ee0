"""A follower cut off from the leader alone (it still reaches the third node) must not depose it.

Real lost packets, in network namespaces. Without pre-vote the follower called an election at a
higher term as soon as its timer ran out, the third node adopted the term, and the healthy leader
was deposed again and again while the cut lasted (term 1 -> 6..9 in 5 s).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex

from ..metrics import per_peer
from .clusters import RAFT_PORT, NamespaceCluster, can_run_namespaces

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MINTER = SigningKey(bytes([7]) * 32)
ALICE, BOB = SigningKey.generate(), public_hex(SigningKey.generate())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NamespaceCluster]:
    why = can_run_namespaces()
    if why:
        pytest.skip(why)
    c = NamespaceCluster(str(tmp_path), public_hex(MINTER))
    try:
        c.start()
        with WalletClient(c.urls, insecure=True) as client:
            assert client.create_currency(MINTER, "USD", 2) == "ok"
            assert client.mint(MINTER, public_hex(ALICE), "USD", 10**6) == "ok"
        yield c
    finally:
        c.cleanup()


def write_for(cluster: NamespaceCluster, node: int, seconds: float) -> None:
    """Transfers through `node`, one at a time, each acknowledged, for `seconds`."""
    deadline = time.monotonic() + seconds
    with WalletClient([cluster.urls[node]], insecure=True) as client:
        while time.monotonic() < deadline:
            assert client.transfer(ALICE, BOB, "USD", 1) == "ok"
            time.sleep(0.05)


def wait_caught_up(cluster: NamespaceCluster, leader: int, node: int) -> None:
    """Until `node` has applied everything the leader has committed now."""
    start = time.monotonic()
    target = (cluster.status(leader) or {})["commit_index"]
    while (cluster.status(node) or {}).get("applied_index", 0) < target:
        assert time.monotonic() - start < 90, f"node {node} did not catch up\n{cluster.diagnose()}"
        time.sleep(0.1)


def test_a_follower_cut_off_from_the_leader_alone_does_not_depose_it(cluster: NamespaceCluster) -> None:
    leader = cluster.leader()
    assert leader is not None, cluster.diagnose()
    before = cluster.status(leader)
    assert before is not None
    follower, other = [i for i in range(cluster.size) if i != leader]
    address = [f"{ip}:{RAFT_PORT}" for ip in cluster.ips]
    cluster.cut(leader, follower)
    try:
        write_for(cluster, leader, 5)  # five longest election timeouts; the leader commits with the third node
        for i in (leader, other):
            status = cluster.status(i)
            assert status is not None
            assert (status["term"], status["leader"]) == (before["term"], before["name"]), cluster.diagnose()
        # What an operator sees of it: the cut link, on both of its ends, and nothing else.
        assert per_peer(cluster.urls[leader], "walletnode_raft_peer_connected") == {
            address[follower]: 0,
            address[other]: 1,
        }
        assert per_peer(cluster.urls[follower], "walletnode_raft_peer_connected")[address[leader]] == 0
    finally:
        cluster.heal_network()
    wait_caught_up(cluster, leader, follower)
    assert (cluster.status(leader) or {}).get("term") == before["term"], cluster.diagnose()
    assert per_peer(cluster.urls[leader], "walletnode_raft_peer_connected")[address[follower]] == 1
