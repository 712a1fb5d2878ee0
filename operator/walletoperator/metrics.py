"""The operator's own metrics, served with /healthz on its liveness port.

Series are labelled with the WalletCluster they concern as `walletcluster_namespace` and
`walletcluster` (a plain `namespace` label would clash with the one Prometheus gives the
operator's own pod).
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PHASES = ("Creating", "Restoring", "Running", "Scaling", "Upgrading", "Degraded", "QuorumLost", "Paused")
CLUSTER = ["walletcluster_namespace", "walletcluster"]

registry = CollectorRegistry()
reconcile_seconds = Histogram(
    "walletoperator_reconcile_seconds",
    "Duration of each reconcile of a WalletCluster (observe, apply, one step, status)",
    CLUSTER,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=registry,
)
reconcile_errors = Counter(
    "walletoperator_reconcile_errors_total",
    "Reconciles that failed (kopf retries them), by the error's type",
    [*CLUSTER, "error"],
    registry=registry,
)
steps = Counter(
    "walletoperator_steps_total",
    "Steps taken on a WalletCluster (add_member, remove_member, transfer_leadership, delete_pod) by outcome",
    [*CLUSTER, "kind", "outcome"],
    registry=registry,
)

base_backups = Counter(
    "walletoperator_base_backups_total",
    "Base backups the operator asked a member for, by trigger (schedule, walletbackup) and outcome (ok, failed)",
    [*CLUSTER, "trigger", "outcome"],
    registry=registry,
)


class Phases(Collector):
    """`walletoperator_clusters{phase}`: how many WalletClusters are in each phase, every phase
    present (0 included) so that a dashboard or alert sees a phase empty rather than absent.

    Every cluster is reconciled every few seconds (paused ones too); one not reported for
    `forget_after_s` has been deleted (or moved to another operator) and no longer counts.
    """

    def __init__(self, forget_after_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._phase: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._forget_after = forget_after_s
        self._clock = clock

    def set(self, namespace: str, name: str, phase: str) -> None:
        with self._lock:
            self._phase[(namespace, name)] = (phase, self._clock())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        oldest = self._clock() - self._forget_after
        with self._lock:
            self._phase = {key: seen for key, seen in self._phase.items() if seen[1] >= oldest}
            phases = [phase for phase, _ in self._phase.values()]
        family = GaugeMetricFamily("walletoperator_clusters", "WalletClusters by phase", labels=["phase"])
        for phase in sorted(set(PHASES) | set(phases)):
            family.add_metric([phase], phases.count(phase))
        yield family


phases = Phases()
registry.register(phases)


async def serve(liveness_url: str) -> web.AppRunner:
    """Serve the liveness path of `liveness_url` (200 while the operator's event loop runs) and
    /metrics on its host and port."""
    parts = urllib.parse.urlsplit(liveness_url)
    if parts.scheme != "http" or not parts.port:
        raise ValueError(f"--liveness must be http://HOST:PORT/PATH, not {liveness_url!r}")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.add_routes([web.get(parts.path or "/healthz", healthz), web.get("/metrics", metrics)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname, parts.port).start()
    return runner
