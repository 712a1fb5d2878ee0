"""Reading a node's Prometheus metrics in tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def per_peer(url: str, metric: str) -> dict[str, float]:
    """A per-peer gauge of the node at `url`, by peer address."""
    families = text_string_to_metric_families(httpx.get(url + "/metrics", timeout=5).text)
    return {s.labels["peer"]: s.value for f in families if f.name == metric for s in f.samples}
