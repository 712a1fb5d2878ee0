"""Node and operator metrics, scraped live: valid for `promtool check metrics`, they explain what
happened (who led, what was written and with which results, how long disk and commits took), and
the dashboard and the alerts read only metrics that really exist."""

from __future__ import annotations

import asyncio
import json

import httpx
import msgspec
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster, free_ports
from walletoperator import metrics as operator_metrics

from ..metrics import (
    DASHBOARD,
    alert_rules,
    dashboard_queries,
    exported_names,
    metric_names,
    promtool,
    samples,
    total,
)
from .conftest import funded, wait_for


def test_node_metrics_pass_promtool_and_explain_the_work(cluster: LocalCluster) -> None:
    alice, bob = SigningKey.generate(), SigningKey.generate()
    with WalletClient(cluster.urls, **cluster.trust) as client:
        funded(client, [alice], 1000)
        assert client.transfer(alice, public_hex(bob), "USD", 5000) == "insufficient_funds"
        forged = msgspec.structs.replace(client.signed_transfer(alice, public_hex(bob), "USD", 1), signature="00" * 64)
        assert client.submit([forged]) == ["invalid_signature"]
    leader = wait_for(cluster.leader, what="a leader")
    scrapes = {
        i: httpx.get(url + "/metrics", timeout=5, verify=cluster.verify).text for i, url in enumerate(cluster.urls)
    }
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


def operator_scrape() -> str:
    """A live scrape of the operator's metrics server (metrics.serve, as `--liveness` starts it)."""

    async def scrape() -> str:
        port = free_ports(1)[0]
        runner = await operator_metrics.serve(f"http://127.0.0.1:{port}/healthz")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                assert (await client.get("/healthz")).status_code == 200
                return (await client.get("/metrics")).text
        finally:
            await runner.cleanup()

    return asyncio.run(scrape())


def test_every_dashboard_and_alert_query_reads_metrics_that_are_exported(shared_cluster: LocalCluster) -> None:
    node = httpx.get(shared_cluster.urls[0] + "/metrics", timeout=5, verify=shared_cluster.verify).text
    operator = operator_scrape()
    checked = promtool("check", "metrics", stdin=operator)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    exported = exported_names(node) | exported_names(operator) | {"up"}  # `up`: Prometheus's own, per target
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) > 20
    for query in queries:
        assert metric_names(query) and metric_names(query) <= exported, (query, metric_names(query) - exported)
    for rule in alert_rules():
        names = metric_names(str(rule["expr"]))
        assert names and names <= exported, (rule["alert"], names - exported)
    used = {name for query in queries for name in metric_names(query)}
    assert {"walletoperator_clusters", "walletoperator_reconcile_seconds_bucket"} <= used
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Write latency", "Group-commit size", "Errors by code", "Apply lag per member", "Memory"} <= titles
