"""Reading Prometheus metrics and rules in tests: scrapes, and promtool from Debian's `prometheus`."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from walletnode.localcluster import free_ports

REPO = Path(__file__).resolve().parent.parent
CHART_FILES = REPO / "charts" / "walletcluster-operator" / "files"
ALERTS = CHART_FILES / "alerts.yaml"
DASHBOARD = CHART_FILES / "dashboard.json"


def per_peer(url: str, metric: str, verify: ssl.SSLContext | bool = True) -> dict[str, float]:
    """A per-peer gauge of the node at `url`, by peer address."""
    families = text_string_to_metric_families(httpx.get(url + "/metrics", timeout=5, verify=verify).text)
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


def rules_with_short_for(path: Path, hold: str) -> Path:
    """A copy of the chart's rules file next to `path` in which every `for:` is `hold`: the real
    holds (one to fifteen minutes) would make a test wait as long; the expressions are unchanged."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = hold
    path.write_text(yaml.safe_dump(rules))
    return path


class Prometheus:
    """A real Prometheus server (Debian's) on loopback, scraping `targets` every second and
    evaluating `rule_file` every second; its data lives in `directory`."""

    def __init__(
        self, directory: Path, targets: dict[str, dict[str, str]], rule_file: Path, ca_file: str | None = None
    ) -> None:
        """`ca_file`: scrape over HTTPS, verifying the targets against this CA."""
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(rule_file)],
            "scrape_configs": [
                {
                    "job_name": "walletcluster",
                    "static_configs": [{"targets": [address], "labels": labels} for address, labels in targets.items()],
                    **({"scheme": "https", "tls_config": {"ca_file": ca_file}} if ca_file else {}),
                }
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = open(directory / "prometheus.log", "wb")  # noqa: SIM115 - open for the server's lifetime
        self.process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def firing(self) -> list[dict[str, str]]:
        """Labels of every alert firing now (pending ones are not)."""
        alerts = httpx.get(self.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return [a["labels"] for a in alerts if a["state"] == "firing"]

    def query(self, expr: str) -> list[float]:
        """The values of an instant query's result."""
        result = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
        return [float(r["value"][1]) for r in result]

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()


SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def exported_names(text: str) -> set[str]:
    """Every series name a scrape in the text format can carry, from its TYPE lines (so a labelled
    metric with no sample yet counts too)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana `label_values(metric, label)`) reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers and ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)", r"\1", expr)
    found = re.findall(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return set(found) - _NOT_METRICS


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every query of a Grafana dashboard: its panels' targets (rows included) and its variables."""
    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    queries = [t["expr"] for p in panels for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries
