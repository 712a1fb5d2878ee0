"""Our cluster against etcd on the same transfer workload, in the same run: `python -m bench.run`.

Both systems run three members on 127.0.0.1 with fsync on and are measured alternately, several
rounds; then failover, memory per account and catch-up are measured on our cluster. Writes
results.json, results.png and results.md into --out-dir (default bench/) and, with --update-doc,
the figures in docs/benchmarks.md. `--quick` is the small version `make test` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster, free_ports

from . import etcd as etcd_cluster
from . import failover, footprint, loadgen, machine, report
from .drivers import Driver, EtcdDriver, WalletDriver
from .workload import MINTER, Signer, Workload


@dataclass
class Config:
    accounts: int = 10_000
    batch_size: int = 100
    step_seconds: float = 5.0
    rounds: int = 3
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    first_guess_per_s: float = 2000.0
    memory_sizes: list[int] = field(default_factory=lambda: [1_000, 100_000, 1_000_000])
    snapshot_entries: int = 100
    catch_up_timeout_s: float = 600.0
    failovers: int = 5
    mode: str = "full"

    @classmethod
    def quick(cls) -> Config:
        """Small enough for `make test` (well under a minute), with contention on purpose: few
        accounts, so etcd's compare-and-set conflicts and its retry path is exercised."""
        return cls(
            accounts=50,
            batch_size=20,
            step_seconds=1.5,
            rounds=1,
            concurrency=[1, 2],
            first_guess_per_s=1000.0,
            memory_sizes=[200, 1_000],
            snapshot_entries=2,
            catch_up_timeout_s=60.0,
            failovers=1,
            mode="quick",
        )


async def _round(driver: Driver, workload: Workload, config: Config, salt: str) -> dict[str, Any]:
    def prepare(count: int, step_salt: str) -> list[Any]:
        return driver.prepare(workload.batches(count, step_salt))

    sweep = await loadgen.sweep(
        driver,
        prepare,
        config.concurrency,
        config.step_seconds,
        config.batch_size,
        config.first_guess_per_s,
        salt,
    )
    peak = max(s.transfers_per_s for s in sweep)
    rate = max(0.5 * peak / config.batch_size, 1 / config.step_seconds)
    half = await loadgen.paced(
        driver,
        prepare(int(rate * config.step_seconds) + 1, f"{salt}/half"),
        rate,
        config.batch_size,
        config.step_seconds,
    )
    for step in [*sweep, half]:
        where = f"c={step.concurrency}" if step.concurrency else f"paced {step.offered_per_s}/s"
        print(
            f"  {driver.name:13} {where:>16}: {step.transfers_per_s:>9,.0f} transfers/s, latency ms {step.latency_ms}, "
            f"server cpu {step.server_cpu_ms_per_transfer:.3f} ms/transfer, conflicts {step.conflicts}, "
            f"failed {step.failed}",
            flush=True,
        )
    return {"sweep": [s.as_dict() for s in sweep], "half_load": half.as_dict()}


async def _conservation(driver: Driver, workload: Workload) -> dict[str, Any]:
    balances = await driver.balances()
    return {
        "expected_total": workload.total,
        "sum_of_balances": balances.total,
        "accounts": balances.accounts,
        "expected_accounts": workload.accounts,
        "negative_balances": balances.negative,
        "conserved": balances.total == workload.total
        and balances.accounts == workload.accounts
        and balances.negative == 0,
    }


async def run(config: Config, work_dir: str, command: str) -> dict[str, Any]:
    began = time.monotonic()
    workload = Workload(accounts=config.accounts, batch_size=config.batch_size)
    results: dict[str, Any] = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "commit": machine.git_commit(),
        "mode": config.mode,
        "machine": machine.describe(work_dir, etcd_cluster.version()),
        "config": asdict(config),
        "workload": {
            "accounts": workload.accounts,
            "initial_balance": workload.initial_balance,
            "amount": workload.amount,
            "batch_size": workload.batch_size,
            "step_seconds": config.step_seconds,
            "rounds": config.rounds,
            "concurrency_steps": config.concurrency,
            "stop_rule": "double the concurrency until throughput grows < 5% over the best so far twice in a row",
            "half_load": "paced (open-loop) step at 50% of the round's peak throughput; latency from the due time",
            "latency": "per transfer, from sending its request (paced: from its due time) to knowing its outcome",
            "ours": "pre-signed batch -> POST /v1/transfers on the leader (one request per batch)",
            "etcd": "per transfer, concurrently within the batch: read both keys (one read-only /v3/kv/txn, "
            "serializable), then /v3/kv/txn comparing both mod_revisions and putting both balances; "
            "on conflict the failure branch returns fresh values and the transfer retries",
        },
        "systems": {},
    }
    print(f"machine: {json.dumps(results['machine'])}", flush=True)
    signer = Signer(workload)
    ports = free_ports(15)  # at once, so the two clusters cannot pick the same ones
    ours = LocalCluster(
        os.path.join(work_dir, "walletcluster"),
        [public_hex(MINTER)],
        3,
        http_ports=ports[:3],
        raft_ports=ports[3:6],
        admin_ports=ports[12:15],
    )
    etcd = etcd_cluster.EtcdCluster(os.path.join(work_dir, "etcd"), ports=ports[6:12])
    try:
        ours.start_all()
        etcd.start_all()
        ours.wait_ready(timeout=60)
        etcd.wait_healthy(timeout=60)
        our_driver = WalletDriver(ours.urls, [p.pid for p in ours.processes.values()], tls=ours.verify)
        etcd_driver = EtcdDriver(etcd.leader_url(), etcd.pids())
        drivers: list[Driver] = [our_driver, etcd_driver]
        for d in drivers:
            await d.open()
            await d.fund(workload, signer)
        rounds: dict[str, list[dict[str, Any]]] = {d.name: [] for d in drivers}
        for r in range(config.rounds):
            print(f"round {r + 1}/{config.rounds}", flush=True)
            for d in drivers if r % 2 == 0 else drivers[::-1]:
                rounds[d.name].append(await _round(d, workload, config, f"round{r}"))
        for d in drivers:
            results["systems"][d.name] = {**report.aggregate(rounds[d.name]), "rounds": rounds[d.name]}
        results["systems"]["etcd"]["conservation"] = await _conservation(etcd_driver, workload)
        await etcd_driver.close()
        etcd.stop_all()
        print("failover", flush=True)
        results["failover"] = failover.measure(ours, workload, our_driver.cluster_id, config.failovers)
        await our_driver.find_leader()
        results["systems"]["walletcluster"]["conservation"] = await _conservation(our_driver, workload)
        await our_driver.close()
        ours.stop_all()
        print("memory per account and catch-up", flush=True)
        results.update(
            await footprint.measure(
                os.path.join(work_dir, "footprint"),
                config.memory_sizes,
                signer,
                config.snapshot_entries,
                config.catch_up_timeout_s,
            )
        )
    finally:
        signer.close()
        ours.stop_all()
        etcd.stop_all()
    results["ratio"] = report.ratio(results["systems"]["walletcluster"], results["systems"]["etcd"])
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = round(time.monotonic() - began, 1)
    return results


def write(results: dict[str, Any], out_dir: str, update_doc: str | None = None) -> str:
    """results.json, results.md and results.png in `out_dir`; the markdown also into `update_doc`."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    fragment = report.markdown(results)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(fragment)
    report.plot(results, os.path.join(out_dir, "results.png"))
    if update_doc:
        report.update_doc(update_doc, fragment)
    return fragment


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small run of make test (under a minute)")
    parser.add_argument("--rounds", type=int, help="rounds, each measuring both systems (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per step (default 5)")
    parser.add_argument("--accounts", type=int, help="accounts of the transfer workload (default 10000)")
    parser.add_argument("--batch", type=int, help="transfers per request (default 100)")
    parser.add_argument("--max-concurrency", type=int, help="highest concurrency step (default 64)")
    parser.add_argument("--memory-sizes", help="comma-separated account counts (default 1000,100000,1000000)")
    parser.add_argument("--failovers", type=int, help="leader kills (default 5)")
    parser.add_argument("--out-dir", default="bench", help="where results.{json,md,png} go (default bench/)")
    parser.add_argument("--work-dir", help="data directories of both clusters (default: a temporary directory)")
    parser.add_argument("--update-doc", metavar="FILE", help="rewrite the results section of FILE (docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if not etcd_cluster.available():
        sys.exit("etcd is not installed (Debian: apt-get install etcd-server; or run hack/host-deps)")
    config = Config.quick() if args.quick else Config()
    if args.rounds:
        config.rounds = args.rounds
    if args.seconds:
        config.step_seconds = args.seconds
    if args.accounts:
        config.accounts = args.accounts
    if args.batch:
        config.batch_size = args.batch
    if args.max_concurrency:
        config.concurrency = [c for c in config.concurrency if c <= args.max_concurrency] or [1]
    if args.memory_sizes:
        config.memory_sizes = [int(x) for x in args.memory_sizes.split(",")]
    if args.failovers:
        config.failovers = args.failovers
    command = "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="bench-", dir=args.work_dir) as work_dir:
        results = asyncio.run(run(config, work_dir, command.strip()))
    print(write(results, args.out_dir, args.update_doc))


if __name__ == "__main__":
    main()
