"""The comparison harness (bench/) in quick mode, so it cannot rot: both systems start small, each
runs a short round, money is conserved on both, and the results document has every reported field.

The workload has 50 accounts on purpose: concurrent transfers collide, so etcd's compare-and-set
conflicts and retries. If that logic lost an update, etcd's sum of balances would drift and this
test would fail.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bench import etcd, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(150),
    pytest.mark.skipif(not etcd.available(), reason="etcd is not installed (hack/host-deps installs etcd-server)"),
]

LATENCY = ("latency_ms.p50", "latency_ms.p99", "latency_ms.max")
PER_SYSTEM = (
    "peak.transfers_per_s",
    *(f"peak.{x}" for x in LATENCY),
    *(f"half_load.{x}" for x in LATENCY),
    "half_load.offered_per_s",
    "peak.server_cpu_ms_per_transfer",
    "peak.loadgen_cpu_ms_per_transfer",
    "half_load.server_cpu_ms_per_transfer",
)
EVERY_REPORTED_FIELD = (
    *(f"systems.{s}.{f}" for s in ("walletcluster", "etcd") for f in PER_SYSTEM),
    "ratio.peak_throughput_ours_over_etcd",
    "catch_up.seconds",
    "catch_up.accounts",
    "failover.median_s",
    "failover.max_s",
    "workload.batch_size",
    "workload.accounts",
    "machine.cores",
    "machine.ram_gib",
)
MACHINE = ("cpu_model", "filesystem", "kernel", "python", "etcd")


def field(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        assert isinstance(value, dict) and part in value, f"results.json lacks {path}"
        value = value[part]
    return value


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    work = tmp_path_factory.mktemp("work")
    out = tmp_path_factory.mktemp("out")
    raw = asyncio.run(run.run(run.Config.quick(), str(work), "python -m bench.run --quick"))
    run.write(raw, str(out))
    return json.loads((out / "results.json").read_text()), out


def test_both_systems_completed_transfers(results: tuple[dict[str, Any], Path]) -> None:
    doc, _ = results
    for name in ("walletcluster", "etcd"):
        for step in doc["systems"][name]["rounds"][0]["sweep"]:
            assert step["transfers"] > 0, f"{name} completed no transfer at concurrency {step['concurrency']}"
            assert step["failed"] == 0, f"{name}: {step['failed']} transfers failed"
        assert doc["systems"][name]["half_load"]["transfers_per_s"] > 0


def test_etcd_compare_and_set_conserves_money(results: tuple[dict[str, Any], Path]) -> None:
    doc, _ = results
    etcd_result = doc["systems"]["etcd"]
    c = etcd_result["conservation"]
    assert c["accounts"] == c["expected_accounts"] == 50
    assert c["sum_of_balances"] == c["expected_total"], c
    assert c["negative_balances"] == 0
    assert c["conserved"]
    # The retry path ran: with 50 accounts, concurrent transfers collide.
    conflicts = sum(s["conflicts"] for s in etcd_result["rounds"][0]["sweep"])
    assert conflicts > 0


def test_our_ledger_conserves_money(results: tuple[dict[str, Any], Path]) -> None:
    doc, _ = results
    c = doc["systems"]["walletcluster"]["conservation"]
    assert c["accounts"] == c["expected_accounts"] == 50
    assert c["sum_of_balances"] == c["expected_total"], c
    assert c["negative_balances"] == 0
    assert c["conserved"]


def test_results_have_every_reported_field(results: tuple[dict[str, Any], Path]) -> None:
    doc, out = results
    for path in EVERY_REPORTED_FIELD:
        value = field(doc, path)
        assert isinstance(value, int | float) and value > 0, f"{path} = {value!r}"
    for name in MACHINE:
        assert field(doc, f"machine.{name}"), f"machine.{name} is empty"
    sizes = field(doc, "memory_per_account.sizes")
    assert [s["accounts"] for s in sizes] == run.Config.quick().memory_sizes
    assert all(s["bytes_per_account"] > 0 for s in sizes)
    catch_ups = field(doc, "catch_up.sizes")
    assert [c["accounts"] for c in catch_ups] == run.Config.quick().memory_sizes
    assert all(c["completed"] and c["seconds"] > 0 for c in catch_ups), catch_ups
    for name in ("walletcluster", "etcd"):
        rows = field(doc, f"systems.{name}.by_concurrency")
        assert [r["concurrency"] for r in rows] == run.Config.quick().concurrency
        assert all(r["transfers_per_s"] > 0 for r in rows)
    assert (out / "results.png").stat().st_size > 10_000
    table = (out / "results.md").read_text()
    assert "| peak throughput (transfers/s) |" in table
    assert "catching up from a snapshot of" in table
