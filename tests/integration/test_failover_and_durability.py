"""SIGKILL the leader, SIGKILL everyone: nothing acknowledged is lost, nothing applied twice."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import pathlib
import shutil
import signal
import threading
import time

import httpx
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex

from ..metrics import per_peer, samples, total
from ..walletctl import walletctl
from .conftest import ClusterFactory, funded, wait_for


def test_leader_kill_new_leader_within_3s_nothing_lost_and_rejoin(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    alice, bob = SigningKey.generate(), SigningKey.generate()
    with WalletClient(cluster.urls, **cluster.trust) as client:
        funded(client, [alice], 10**9)
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with WalletClient(cluster.urls, deadline_s=20, **cluster.trust) as c:
            while not stop.is_set():
                t = c.signed_transfer(alice, public_hex(bob), "USD", 1)
                # "exists": the client retried the same signed command after the leader died and
                # the first attempt had been applied: the transfer happened exactly once.
                assert c.submit([t]) in (["ok"], ["exists"])
                acknowledged.append(t.id)

    thread = threading.Thread(target=writer)
    thread.start()
    wait_for(lambda: len(acknowledged) > 20, what="writes before the kill")
    leader = wait_for(cluster.leader, what="a leader", diagnose=cluster.diagnose)
    survivors = [u for i, u in enumerate(cluster.urls) if i != leader]
    cluster.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    with WalletClient(survivors, deadline_s=10, **cluster.trust) as c:
        assert c.transfer(alice, public_hex(bob), "USD", 1) == "ok"
    failover = time.monotonic() - killed_at
    wait_for(lambda: len(acknowledged) > 40, what="writes after the kill")
    stop.set()
    thread.join(timeout=30)
    assert failover < 3.0, f"first accepted transfer {failover:.2f}s after the leader died"
    dead = cluster.raft_addresses[leader]
    for url in survivors:
        wait_for(
            lambda: per_peer(url, "walletnode_raft_peer_connected", cluster.verify)[dead] == 0,  # noqa: B023
            what="the dead peer shown as cut",
        )

    with httpx.Client(timeout=10, verify=cluster.verify) as http:
        for command_id in acknowledged:
            assert http.get(f"{survivors[0]}/v1/transfers/{command_id}").status_code == 200
    cluster.start(leader)
    expected = cluster.status(1 if leader != 1 else 0)
    assert expected is not None
    wait_for(
        lambda: (cluster.status(leader) or {}).get("audit_index", 0) >= expected["audit_index"],
        what="the restarted node to catch up",
    )
    with WalletClient([cluster.urls[leader]], **cluster.trust) as c:
        assert c.balances(public_hex(bob), consistency="stale")["USD"] >= len(acknowledged) + 1
    now_leading = wait_for(cluster.leader, what="a leader")
    assert now_leading != leader, "a rejoining member does not depose a healthy leader (pre-vote)"
    url = cluster.urls[now_leading]
    assert per_peer(url, "walletnode_raft_peer_connected", cluster.verify)[dead] == 1
    commit_index = httpx.get(url + "/v1/status", timeout=5, verify=cluster.verify).json()["commit_index"]
    wait_for(
        lambda: per_peer(url, "walletnode_raft_peer_match_index", cluster.verify)[dead] >= commit_index,
        what="the leader to see the rejoined member caught up",
    )
    # Handed over, the old leader's replication numbers go stale: it must stop reporting them.
    moved = cluster.admin_request(now_leading, "POST", "/v1/leadership", {}, timeout=30)
    assert moved.status_code == 200, moved.text
    wait_for(lambda: cluster.leader() not in (None, now_leading), what="leadership to move")
    assert per_peer(url, "walletnode_raft_peer_match_index", cluster.verify) == {}
    assert {
        m["match_index"] for m in httpx.get(url + "/v1/status", timeout=5, verify=cluster.verify).json()["members"]
    } == {None}


def test_full_cluster_sigkill_after_a_burst_keeps_every_acknowledged_transfer(make_cluster: ClusterFactory) -> None:
    # Small snapshot interval so the burst crosses several snapshots and journal compactions.
    cluster = make_cluster(extra_args=("--snapshot-entries", "20"))
    senders = [SigningKey.generate() for _ in range(8)]
    receiver = SigningKey.generate()
    with WalletClient(cluster.urls, **cluster.trust) as client:
        funded(client, senders, 10**6)

    def burst(sender: SigningKey) -> list[str]:
        ids = []
        with WalletClient(cluster.urls, **cluster.trust) as c:
            for round_ in range(15):
                batch = [c.signed_transfer(sender, public_hex(receiver), "USD", 1 + round_) for _ in range(20)]
                assert set(c.submit(batch)) <= {"ok", "exists"}
                ids += [t.id for t in batch]
        return ids

    with concurrent.futures.ThreadPoolExecutor(len(senders)) as pool:
        acknowledged = [i for ids in pool.map(burst, senders) for i in ids]
    for i in range(3):
        cluster.kill(i, signal.SIGKILL)

    cluster.start_all()
    cluster.wait_ready(timeout=60)
    per_sender = sum(20 * (1 + r) for r in range(15))
    with WalletClient(cluster.urls, **cluster.trust) as c:
        assert c.balances(public_hex(receiver)) == {"USD": per_sender * len(senders)}, "each exactly once"
        for sender in senders:
            assert c.balances(public_hex(sender)) == {"USD": 10**6 - per_sender}
    with httpx.Client(timeout=10, verify=cluster.verify) as http:
        for command_id in acknowledged[::7]:
            assert http.get(f"{cluster.urls[0]}/v1/transfers/{command_id}").status_code == 200
    statuses = [cluster.status(i) for i in range(3)]
    wait_for(
        lambda: len({(cluster.status(i) or {}).get("audit_hash") for i in range(3)}) == 1,
        what="replicas to agree on the audit hash",
    )
    assert all(s is not None for s in statuses)


def test_a_replica_that_lost_its_disk_rejoins_from_a_snapshot_while_clients_write(
    make_cluster: ClusterFactory,
) -> None:
    """The leader has compacted its log, so the wiped replica can only come back by installing the
    leader's snapshot (sent in chunks, written by a forked child) and then the entries after it."""
    cluster = make_cluster(extra_args=("--snapshot-entries", "20"))
    alice, bob = SigningKey.generate(), SigningKey.generate()
    early: list[str] = []
    with WalletClient(cluster.urls, **cluster.trust) as client:
        funded(client, [alice], 10**9)
        for _ in range(60):  # 60 entries: several snapshots, the first entries compacted away
            batch = [client.signed_transfer(alice, public_hex(bob), "USD", 1) for _ in range(5)]
            assert client.submit(batch) == ["ok"] * 5
            early.append(batch[0].id)
    leader = wait_for(cluster.leader, what="a leader", diagnose=cluster.diagnose)
    wait_for(lambda: (cluster.status(leader) or {}).get("first_log_index", 1) > 1, what="a compacted log on the leader")

    follower = next(i for i in range(3) if i != leader)
    cluster.kill(follower, signal.SIGKILL)
    shutil.rmtree(cluster.data_dir(follower))
    acknowledged = 300
    stop = threading.Event()

    def writer() -> None:
        nonlocal acknowledged
        with WalletClient(
            [u for i, u in enumerate(cluster.urls) if i != follower], deadline_s=20, **cluster.trust
        ) as c:
            while not stop.is_set():
                assert c.submit([c.signed_transfer(alice, public_hex(bob), "USD", 1)]) == ["ok"]
                acknowledged += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        cluster.start(follower)
        wait_for(lambda: acknowledged > 400, what="writes while the replica rejoins")
    finally:
        stop.set()
        thread.join(timeout=30)
    wait_for(
        lambda: len({(cluster.status(i) or {}).get("audit_hash") for i in range(3)}) == 1,
        what="the wiped replica to catch up",
        diagnose=cluster.diagnose,
    )
    with WalletClient([cluster.urls[follower]], **cluster.trust) as c:
        # A stale read sees what the replica has published, up to 250 ms behind what it applied.
        wait_for(
            lambda: c.balances(public_hex(bob), consistency="stale") == {"USD": acknowledged},
            what="the rejoined replica to hold exactly the acknowledged transfers",
        )
    # The metrics tell the story: a snapshot went out and the wiped replica installed it.
    scraped = [samples(httpx.get(url + "/metrics", timeout=5, verify=cluster.verify).text) for url in cluster.urls]
    installed = total(scraped[follower], "walletnode_raft_snapshot_installed_bytes_total")
    assert installed > 0 and total(scraped[follower], "walletnode_raft_snapshot_install_seconds_count") >= 1
    assert sum(total(m, "walletnode_raft_snapshot_sent_bytes_total") for m in scraped) >= installed
    with httpx.Client(timeout=10, verify=cluster.verify) as http:  # records that came in the snapshot read back
        for command_id in early[::10]:
            r = http.get(f"{cluster.urls[follower]}/v1/transfers/{command_id}", params={"consistency": "stale"})
            assert r.status_code == 200 and r.json()["command"]["id"] == command_id


def test_after_every_node_is_sigkilled_the_audit_chain_verifies_from_genesis(
    make_cluster: ClusterFactory, tmp_path: pathlib.Path
) -> None:
    """The entries live in each node's store, not in a memory window: after a full-cluster SIGKILL
    (logs compacted every 20 entries, so a restart must start from the store) every node serves
    /v1/events from index 1, the chain recomputed from it ends at each node's audit hash, and
    `walletctl audit verify` passes."""
    cluster = make_cluster(extra_args=("--snapshot-entries", "20"))
    alice, bob = SigningKey.generate(), SigningKey.generate()
    with WalletClient(cluster.urls, **cluster.trust) as client:
        funded(client, [alice], 10**6)
        for _ in range(50):
            assert client.submit([client.signed_transfer(alice, public_hex(bob), "USD", 3)]) == ["ok"]
    for i in range(3):
        cluster.kill(i, signal.SIGKILL)
    cluster.start_all()
    cluster.wait_ready(timeout=60)
    wait_for(
        lambda: len({(cluster.status(i) or {}).get("audit_hash") for i in range(3)}) == 1,
        what="replicas to agree on the audit hash",
    )
    for i, url in enumerate(cluster.urls):
        status = cluster.status(i)
        assert status is not None and status["first_log_index"] > 1, "the journal was compacted"
        chain = bytes(32)
        with WalletClient([url], **cluster.trust) as client:
            events = list(client.events(0, status["audit_index"]))
        assert [e["index"] for e in events] == list(range(1, status["audit_index"] + 1))
        for event in events:
            chain = hashlib.sha256(chain + base64.b64decode(event["entry"])).digest()
            assert chain.hex() == event["audit_hash"]
        assert chain.hex() == status["audit_hash"]
    with WalletClient(cluster.urls, **cluster.trust) as client:
        assert client.balances(public_hex(bob)) == {"USD": 150}, "each transfer applied exactly once"
    home = str(tmp_path / "keys")
    env = {**os.environ, **cluster.client_env(), "WALLET_HOME": home, "WALLET_PASSWORD": ""}
    audit = walletctl(env, "-o", "json", "audit", "verify")
    assert audit.returncode == 0, audit.stderr
    verdict = json.loads(audit.stdout)
    assert verdict["disagree"] == [] and len(verdict["agree"]) == 3
