"""Reading Prometheus metrics and rules in tests: scrapes, and promtool from Debian's `prometheus`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
CHART_FILES = REPO / "charts" / "walletcluster-operator" / "files"
ALERTS = CHART_FILES / "alerts.yaml"
DASHBOARD = CHART_FILES / "dashboard.json"


def per_peer(url: str, metric: str) -> dict[str, float]:
    """A per-peer gauge of the node at `url`, by peer address."""
    families = text_string_to_metric_families(httpx.get(url + "/metrics", timeout=5).text)
    return {s.labels["peer"]: s.value for f in families if f.name == metric for s in f.samples}


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A scrape's samples by sample name (`x_bucket`, `x_count`, `y_total`...)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for have, v in found.get(name, []) if labels.items() <= have.items())


def tool(name: str) -> str:
    """A binary of Debian's `prometheus` package (hack/host-deps installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: run hack/host-deps (installs Debian's prometheus)")
    return path


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], input=stdin, text=True, capture_output=True, timeout=120, cwd=cwd)


def alert_rules() -> list[dict[str, object]]:
    """Every alerting rule of the chart's rules file."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]
