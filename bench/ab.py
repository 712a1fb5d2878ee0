"""Same-run A/B of two versions of the node: `python -m bench.ab --baseline REV`, or of this
version over plain HTTP and over HTTPS: `python -m bench.ab --plain-vs-tls` (what TLS costs).

The baseline is checked out at REV in a git worktree with a virtualenv of its own (both kept
under ~/.cache/walletcluster/ab/REV). Against a baseline both versions serve plain HTTP, so the
engines are compared and not TLS (a baseline from before TLS gets none of its flags). Then,
round after round, alternating which goes first, each variant gets a fresh three-node cluster on
127.0.0.1 and the same pre-signed workload: a closed-loop sweep of concurrencies (peak
transfers/s, median batch latency and server CPU per transfer at the peak), then leader SIGKILLs
(seconds to the first accepted write). Prints one table of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster

from . import failover, loadgen
from .drivers import WalletDriver
from .workload import MINTER, Signer, Workload

CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "walletcluster", "ab")


def baseline_python(rev: str) -> str:
    """The interpreter of a virtualenv holding the node at `rev` (built once, then reused)."""
    repo = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
    commit = subprocess.run(["git", "rev-parse", rev], capture_output=True, text=True, check=True).stdout.strip()
    home = os.path.join(CACHE, commit[:12])
    python = os.path.join(home, "venv", "bin", "python")
    if not os.path.exists(python):
        tree = os.path.join(home, "tree")
        if not os.path.isdir(tree):
            subprocess.run(["git", "-C", repo.stdout.strip(), "worktree", "add", "--detach", tree, commit], check=True)
        subprocess.run([sys.executable, "-m", "venv", os.path.join(home, "venv")], check=True)
        sigs = os.path.join(tree, "native", "sigs")
        if os.path.isdir(sigs):  # the native signature module, from when there is one (maturin via pip)
            subprocess.run([python, "-m", "pip", "install", "-q", sigs], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "-e", f"{tree}[node]"], check=True)
    return python


def knows_tls(python: str) -> bool:
    """Does the node of this interpreter take the TLS flags (this version's command line)?"""
    usage = subprocess.run([python, "-m", "walletnode.cli.node", "serve", "--help"], capture_output=True, text=True)
    return "--insecure-http" in usage.stdout


@dataclass(frozen=True)
class Variant:
    python: str
    tls: bool = True
    before_tls: bool = False


async def one_round(name: str, variant: Variant, workload: Workload, signer: Signer, kills: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"ab-{name}-") as work:
        cluster = LocalCluster(
            work, [public_hex(MINTER)], 3, python=variant.python, tls=variant.tls, before_tls=variant.before_tls
        )
        cluster.start_all()
        try:
            cluster.wait_ready(timeout=60)
            driver = WalletDriver(cluster.urls, [p.pid for p in cluster.processes.values()], tls=cluster.verify)
            await driver.open()
            await driver.fund(workload, signer)

            def prepare(count: int, salt: str) -> list[Any]:
                return driver.prepare(workload.batches(count, salt))

            sweep = await loadgen.sweep(driver, prepare, [4, 8, 16, 32], 5.0, workload.batch_size, 3000.0, name)
            await driver.close()
            peak = max(sweep, key=lambda s: s.transfers_per_s)
            times = failover.measure(cluster, workload, driver.cluster_id, kills)["runs"]
        finally:
            cluster.stop_all()
    print(
        f"  {name:9} peak {peak.transfers_per_s:8,.0f}/s at c={peak.concurrency}, "
        f"p50 {peak.latency_ms['p50']:.1f} ms, p99 {peak.latency_ms['p99']:.1f} ms, "
        f"cpu {peak.server_cpu_ms_per_transfer:.3f} ms/transfer, failover {[round(t, 2) for t in times]}",
        flush=True,
    )
    return {
        "peak": peak.transfers_per_s,
        "cpu": peak.server_cpu_ms_per_transfer,
        "p50": peak.latency_ms["p50"],
        "p99": peak.latency_ms["p99"],
        "failover": times,
    }


async def main(baseline: str | None, rounds: int, kills: int) -> None:
    if baseline is None:
        versions = {"plain": Variant(sys.executable, tls=False), "tls": Variant(sys.executable)}
    else:
        python = baseline_python(baseline)
        versions = {
            "baseline": Variant(python, tls=False, before_tls=not knows_tls(python)),
            "current": Variant(sys.executable, tls=False),
        }
    first, second = versions
    workload = Workload(accounts=10_000, batch_size=100)
    signer = Signer(workload)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
    try:
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}", flush=True)
            order = list(versions) if r % 2 == 0 else list(versions)[::-1]
            for name in order:
                results[name].append(await one_round(name, versions[name], workload, signer, kills))
    finally:
        signer.close()
    print(f"\n| {first} vs {second}, {rounds} rounds | {first} | {second} |\n|---|---|---|")
    rows = {
        "peak transfers/s (median of rounds)": lambda rs: f"{statistics.median(r['peak'] for r in rs):,.0f}",
        "transfer latency p50 ms at peak (median)": lambda rs: f"{statistics.median(r['p50'] for r in rs):.1f}",
        "transfer latency p99 ms at peak (median)": lambda rs: f"{statistics.median(r['p99'] for r in rs):.1f}",
        "server CPU ms/transfer at peak (median)": lambda rs: f"{statistics.median(r['cpu'] for r in rs):.3f}",
        "failover s, median": lambda rs: f"{statistics.median(t for r in rs for t in r['failover']):.2f}",
        "failover s, max": lambda rs: f"{max(t for r in rs for t in r['failover']):.2f}",
        "leader kills": lambda rs: str(sum(len(r["failover"]) for r in rs)),
    }
    for label, cell in rows.items():
        print(f"| {label} | {cell(results[first])} | {cell(results[second])} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--baseline", help="git revision to compare against")
    which.add_argument("--plain-vs-tls", action="store_true", help="this version over HTTP, then over HTTPS")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=7, help="leader SIGKILLs per round")
    args = parser.parse_args()
    asyncio.run(main(args.baseline, args.rounds, args.kills))
