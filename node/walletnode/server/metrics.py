"""Prometheus metrics of one node (its own registry, so several nodes can share a process in tests)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..ledger.codes import Code
from ..ledger.commands import Command
from .machine import AppliedEntry


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "walletnode_commands_total",
            "Commands answered by this node, by kind and result",
            ["kind", "result"],
            registry=self.registry,
        )
        self.entries = Counter(
            "walletnode_entries_applied_total", "Ledger entries applied on this replica", registry=self.registry
        )
        self.entry_commands = Histogram(
            "walletnode_entry_commands",
            "Commands per applied entry (group commit size)",
            buckets=(1, 10, 100, 1000, 4000, 8190, 16380),
            registry=self.registry,
        )
        self.requests = Histogram(
            "walletnode_http_request_seconds",
            "HTTP request latency by route and status",
            ["route", "status"],
            registry=self.registry,
        )

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        Gauge(name, doc, registry=self.registry).set_function(read)

    def observe_entry(self, applied: AppliedEntry) -> None:
        self.entries.inc()
        self.entry_commands.observe(len(applied.results))

    def observe_results(self, commands: Sequence[Command], results: Sequence[Code]) -> None:
        for (kind, result), n in Tally(
            (type(c).__name__, r.value) for c, r in zip(commands, results, strict=True)
        ).items():
            self.commands.labels(kind, result).inc(n)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def raft_gauges(metrics: Metrics, status: Callable[[], dict[str, Any]]) -> None:
    metrics.gauge("walletnode_raft_term", "Current Raft term", lambda: status()["term"])
    metrics.gauge("walletnode_raft_commit_index", "Raft commit index", lambda: status()["commit_index"])
    metrics.gauge("walletnode_raft_applied_index", "Raft applied index", lambda: status()["applied_index"])
    metrics.gauge("walletnode_raft_is_leader", "1 if this node is the leader", lambda: status()["role"] == "leader")
    metrics.gauge("walletnode_journal_bytes", "Bytes in the Raft journal", lambda: status()["journal_bytes"])
    metrics.registry.register(_PeerCollector(status))


class _PeerCollector(Collector):
    """One sample per Raft peer, labelled by its address; peers come and go with membership changes,
    so the samples are read from the status at each scrape rather than kept in labelled gauges."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self._status()
        connected = GaugeMetricFamily(
            "walletnode_raft_peer_connected",
            "1 while this node holds an authenticated connection to the peer (a cut link shows as 0 on both ends)",
            labels=["peer"],
        )
        for peer, up in sorted(status["connected"].items()):
            connected.add_metric([peer], float(up))
        yield connected
        match = GaugeMetricFamily(
            "walletnode_raft_peer_match_index",
            "On the leader: the last log index known to be replicated on the peer (commit index minus this is its lag)",
            labels=["peer"],
        )
        for peer, index in sorted(status["match_index"].items()):  # empty unless leading
            match.add_metric([peer], float(index))
        yield match
