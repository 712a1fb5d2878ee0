"""The alert rules against a real Prometheus server scraping a real three-node cluster: kill two nodes
and the quorum alert fires; restart them and it resolves.

The rules are the chart's, with every `for:` cut to a few seconds (rules_with_short_for) and
Prometheus scraping and evaluating every second, so the test takes seconds rather than minutes;
the expressions are exactly the shipped ones.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from walletnode.localcluster import LocalCluster

from ..metrics import Prometheus, rules_with_short_for
from .conftest import wait_for

pytestmark = pytest.mark.timeout(240, func_only=True)


@pytest.fixture
def prometheus(cluster: LocalCluster, tmp_path: Path) -> Iterator[Prometheus]:
    targets = {
        url.partition("://")[2]: {"namespace": "local", "walletcluster": "test", "pod": f"test-{i}"}
        for i, url in enumerate(cluster.urls)
    }
    server = Prometheus(tmp_path, targets, rules_with_short_for(tmp_path / "alerts.yaml", "3s"), cluster.ca_file)
    try:
        wait_for(server.ready, timeout=60, what="Prometheus to start")
        yield server
    finally:
        server.stop()


def names(alerts: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(a["alertname"], a.get("pod", a.get("walletcluster", ""))) for a in alerts}


def test_quorum_loss_fires_the_no_leader_alert_and_recovery_resolves_it(
    cluster: LocalCluster, prometheus: Prometheus
) -> None:
    wait_for(
        lambda: (
            prometheus.query('sum(up{walletcluster="test"})') == [3.0]
            and prometheus.query("max(walletnode_raft_is_leader)") == [1.0]
        ),
        what="Prometheus to see three members and a leader",
    )
    assert prometheus.firing() == []
    for i in (1, 2):
        cluster.kill(i, signal.SIGKILL)

    expected = {
        ("WalletClusterNoLeader", "test"),
        ("WalletClusterMemberDown", "test-1"),
        ("WalletClusterMemberDown", "test-2"),
    }
    seen = wait_for(
        lambda: (got := names(prometheus.firing())) >= expected and got,
        timeout=60,
        what="the quorum alerts to fire",
        diagnose=lambda: f"firing: {prometheus.firing()}\n{cluster.diagnose()}",
    )
    no_leader = next(a for a in prometheus.firing() if a["alertname"] == "WalletClusterNoLeader")
    assert no_leader == {
        "alertname": "WalletClusterNoLeader",
        "namespace": "local",
        "walletcluster": "test",
        "severity": "critical",
    }
    assert ("WalletClusterPeerDisconnected", "test-0") in seen | names(prometheus.firing())

    for i in (1, 2):
        cluster.start(i)
    cluster.wait_ready(timeout=60)
    wait_for(
        lambda: prometheus.firing() == [],
        timeout=60,
        what="every alert to resolve",
        diagnose=lambda: f"firing: {prometheus.firing()}",
    )
