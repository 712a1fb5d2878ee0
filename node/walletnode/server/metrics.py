"""Prometheus metrics of one node (its own registry, so several nodes can share a process in tests).

Names follow Prometheus conventions (base units in names, `_total` counters); docs/operations.md
lists them and the alerts built on them.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..ledger.codes import Code
from ..ledger.commands import Command
from .machine import AppliedEntry

# Seconds, from a fast disk's fsync (~100 µs) to a stalled one.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SNAPSHOT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The node's registry; also the consensus engine's `RaftObserver`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, open fds
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
            "HTTP request latency by method, route and status",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.apply_seconds = Histogram(
            "walletnode_apply_seconds",
            "Time to apply one committed entry to the ledger",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "walletnode_commit_seconds",
            "From proposing an entry to its being applied on this node (replication, fsync and apply)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fsync_seconds = Histogram(
            "walletnode_journal_fsync_seconds",
            "Duration of each fsync of the Raft journal",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.elections = Counter(
            "walletnode_raft_elections_total", "Elections this member called", registry=self.registry
        )
        self.leader_changes = Counter(
            "walletnode_raft_leader_changes_total",
            "Times this member came to know a different leader",
            registry=self.registry,
        )
        self.snapshot_send = Histogram(
            "walletnode_raft_snapshot_send_seconds",
            "As leader: duration of each snapshot sent to a follower",
            buckets=SNAPSHOT_BUCKETS,
            registry=self.registry,
        )
        self.snapshot_sent_bytes = Counter(
            "walletnode_raft_snapshot_sent_bytes_total", "Snapshot bytes sent to followers", registry=self.registry
        )
        self.snapshot_install = Histogram(
            "walletnode_raft_snapshot_install_seconds",
            "Duration of each snapshot received from the leader, from first chunk to loaded",
            buckets=SNAPSHOT_BUCKETS,
            registry=self.registry,
        )
        self.snapshot_installed_bytes = Counter(
            "walletnode_raft_snapshot_installed_bytes_total",
            "Snapshot bytes received and loaded",
            registry=self.registry,
        )

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        Gauge(name, doc, registry=self.registry).set_function(read)

    def observe_entry(self, applied: AppliedEntry) -> None:
        self.entries.inc()
        self.entry_commands.observe(len(applied.results))
        self.apply_seconds.observe(applied.apply_seconds)

    def observe_results(self, commands: Sequence[Command], results: Sequence[Code]) -> None:
        for (kind, result), n in Tally(
            (type(c).__name__, r.value) for c, r in zip(commands, results, strict=True)
        ).items():
            self.commands.labels(kind, result).inc(n)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- RaftObserver (called on the Raft thread) -------------------------------------------

    def fsynced(self, seconds: float) -> None:
        self.fsync_seconds.observe(seconds)

    def election_called(self, term: int) -> None:
        self.elections.inc()

    def leader_changed(self, term: int, leader: str) -> None:
        self.leader_changes.inc()

    def snapshot_sent(self, seconds: float, size: int) -> None:
        self.snapshot_send.observe(seconds)
        self.snapshot_sent_bytes.inc(size)

    def snapshot_installed(self, seconds: float, size: int) -> None:
        self.snapshot_install.observe(seconds)
        self.snapshot_installed_bytes.inc(size)


def volume_gauges(metrics: Metrics, data_dir: str) -> None:
    """Size, used and free bytes of the file system holding the data directory (free: for non-root,
    as the node runs). Alerts predict from `free` when the volume will be full."""

    def read(field: str) -> Callable[[], float]:
        def value() -> float:
            fs = os.statvfs(data_dir)
            size, free = fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize
            return {"size": size, "free": free, "used": size - fs.f_bfree * fs.f_frsize}[field]

        return value

    metrics.gauge("walletnode_data_volume_size_bytes", "Size of the data volume", read("size"))
    metrics.gauge("walletnode_data_volume_used_bytes", "Bytes used on the data volume", read("used"))
    metrics.gauge("walletnode_data_volume_free_bytes", "Bytes free on the data volume for the node", read("free"))


class ArchiveReport(Protocol):
    """What the archive gauges read of the node's archiver (backup/archiver.py)."""

    error: str | None
    archived_at: float


def archive_gauges(metrics: Metrics, archiver: Callable[[], ArchiveReport | None]) -> None:
    """The continuous archive (0 on a node without --backup-*): whether uploads fail, and when the
    last one succeeded (only the leader uploads)."""
    metrics.gauge(
        "walletnode_archive_failing",
        "1 while this member's uploads to the object store fail (it retries; writes go on)",
        lambda: float(bool((a := archiver()) is not None and a.error)),
    )
    metrics.gauge(
        "walletnode_archive_last_upload_timestamp_seconds",
        "Unix time of this member's last successful archive upload (0: none)",
        lambda: (a.archived_at if (a := archiver()) is not None else 0.0),
    )


def raft_gauges(metrics: Metrics, status: Callable[[], dict[str, Any]]) -> None:
    metrics.gauge("walletnode_raft_term", "Current Raft term", lambda: status()["term"])
    metrics.gauge("walletnode_raft_commit_index", "Raft commit index", lambda: status()["commit_index"])
    metrics.gauge("walletnode_raft_applied_index", "Raft applied index", lambda: status()["applied_index"])
    metrics.gauge("walletnode_raft_is_leader", "1 if this node is the leader", lambda: status()["role"] == "leader")
    metrics.gauge("walletnode_journal_bytes", "Bytes in the Raft journal", lambda: status()["journal_bytes"])
    metrics.gauge("walletnode_raft_members", "Members of the Raft configuration", lambda: len(status()["members"]))
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
