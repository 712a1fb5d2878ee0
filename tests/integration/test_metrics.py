"""Node metrics on a real three-node cluster: valid for `promtool check metrics`, and they explain what
happened (who led, what was written and with which results, how long disk and commits took)."""

from __future__ import annotations

import httpx
import msgspec
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster

from ..metrics import promtool, samples, total
from .conftest import funded, wait_for


def test_node_metrics_pass_promtool_and_explain_the_work(cluster: LocalCluster) -> None:
    alice, bob = SigningKey.generate(), SigningKey.generate()
    with WalletClient(cluster.urls) as client:
        funded(client, [alice], 1000)
        assert client.transfer(alice, public_hex(bob), "USD", 5000) == "insufficient_funds"
        forged = msgspec.structs.replace(client.signed_transfer(alice, public_hex(bob), "USD", 1), signature="00" * 64)
        assert client.submit([forged]) == ["invalid_signature"]
    leader = wait_for(cluster.leader, what="a leader")
    scrapes = {i: httpx.get(url + "/metrics", timeout=5).text for i, url in enumerate(cluster.urls)}
    for i, text in scrapes.items():
        assert "walletnode_raft_term" in text
        checked = promtool("check", "metrics", stdin=text)
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), f"node {i}"

    nodes = {i: samples(text) for i, text in scrapes.items()}
    assert sum(total(m, "walletnode_raft_elections_total") for m in nodes.values()) >= 1
    for m in nodes.values():
        assert total(m, "walletnode_raft_leader_changes_total") >= 1, "every member came to know a leader"
        assert total(m, "walletnode_journal_fsync_seconds_count") > 0
        assert total(m, "walletnode_apply_seconds_count") == total(m, "walletnode_entries_applied_total") > 0
        assert total(m, "walletnode_raft_members") == 3
        assert 0 < total(m, "walletnode_data_volume_free_bytes") < total(m, "walletnode_data_volume_size_bytes")
        assert total(m, "process_resident_memory_bytes") > 0
    everywhere = {
        name: sum(total(m, name, **labels) for m in nodes.values())
        for name, labels in [
            ("walletnode_commit_seconds_count", {}),
            ("walletnode_commands_total", {"kind": "Transfer", "result": "insufficient_funds"}),
            ("walletnode_commands_total", {"kind": "Transfer", "result": "invalid_signature"}),
            ("walletnode_commands_total", {"kind": "Mint", "result": "ok"}),
        ]
    }
    assert all(everywhere.values()), everywhere
    assert total(nodes[leader], "walletnode_commit_seconds_count") > 0, "the leader proposes the entries"
    routes = {
        (labels["method"], labels["route"], labels["status"])
        for m in nodes.values()
        for labels, _ in m["walletnode_http_request_seconds_count"]
    }
    assert ("POST", "/v1/transfers", "200") in routes
