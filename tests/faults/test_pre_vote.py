"""A member cut off from the leader alone must not depose it (Raft pre-vote).

Real dropped packets between the leader and one follower, in network namespaces; that follower
still reaches the third node. Without pre-vote it calls an election at a higher term as soon as
its timer runs out, the third node adopts the term, and the healthy leader is deposed, again and
again while the cut lasts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex

from .clusters import NamespaceCluster, can_run_namespaces

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MINTER = SigningKey(bytes([7]) * 32)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NamespaceCluster]:
    why = can_run_namespaces()
    if why:
        pytest.skip(why)
    c = NamespaceCluster(str(tmp_path), public_hex(MINTER))
    try:
        c.start()
        yield c
    finally:
        c.cleanup()


def test_a_follower_cut_off_from_the_leader_alone_does_not_depose_it(cluster: NamespaceCluster) -> None:
    alice, bob = SigningKey.generate(), public_hex(SigningKey.generate())
    with WalletClient(cluster.urls) as client:
        assert client.create_currency(MINTER, "USD", 2) == "ok"
        assert client.mint(MINTER, public_hex(alice), "USD", 10**6) == "ok"
    leader = cluster.leader()
    assert leader is not None, cluster.diagnose()
    before = cluster.status(leader)
    assert before is not None
    follower, other = [i for i in range(cluster.size) if i != leader]
    cluster.cut(leader, follower)
    try:
        deadline = time.monotonic() + 5  # five times the longest election timeout
        with WalletClient([cluster.urls[leader]]) as client:
            while time.monotonic() < deadline:  # the leader keeps committing with the third node
                assert client.transfer(alice, bob, "USD", 1) == "ok"
                time.sleep(0.05)
        for i in (leader, other):
            status = cluster.status(i)
            assert status is not None
            assert (status["term"], status["leader"]) == (before["term"], before["name"]), cluster.diagnose()
    finally:
        cluster.heal_network()
    leader_status = cluster.status(leader)
    assert leader_status is not None
    deadline = time.monotonic() + 30
    while (cluster.status(follower) or {}).get("applied_index", 0) < leader_status["commit_index"]:
        assert time.monotonic() < deadline, f"the follower did not catch up after the cut\n{cluster.diagnose()}"
        time.sleep(0.1)
    assert (cluster.status(leader) or {}).get("term") == before["term"], cluster.diagnose()
