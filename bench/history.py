"""A ledger with a long history: memory, disk, throughput, restart and catch-up against transfers applied.

`python -m bench.history --transfers 10000,1000000,10000000` measures, for each size, a three-node
cluster whose nodes start on a store that already holds that many transfers (between accounts of
one tenth as many). Signing and submitting 10M transfers over HTTP would take a day here, so the
store is built by applying pre-built entries straight into the node's state machine (what a node
does with committed entries: signatures are checked before an entry enters the log, never by the
state machine); each node gets a copy, and a journal whose snapshot is the store's last index.
Then real nodes are started on it and measured:

- RssAnon of every node (its own memory; the store's mapped pages are page cache) after a load step;
- disk bytes per applied transfer: store + journal of a node, divided by the transfers it holds;
- throughput of a closed-loop step of signed transfers over HTTP (and server CPU per transfer);
- a follower and then the leader SIGKILLed and restarted: seconds until its /readyz answers 200;
- a follower SIGKILLed, its data directory deleted, started again while writes go on: seconds until
  it has applied the leader's commit index as of its start.

Writes history.json, history.png and (with --update-doc) a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx

from walletnode.consensus.log_store import DiskLog
from walletnode.consensus.messages import ConfState, HardState, SnapshotMeta
from walletnode.ledger.commands import CreateCurrency, Entry, Mint, Transfer, encode_entry
from walletnode.ledger.signing import public_hex
from walletnode.ledger.state import configure_entry
from walletnode.localcluster import LocalCluster
from walletnode.server.machine import LedgerMachine

from . import loadgen, machine
from .drivers import WalletDriver
from .footprint import node_status
from .procfs import rss_anon_bytes
from .workload import MINTER, Signer, Workload

MIB = 1 << 20
CURRENCY = "HIST"
SIGNATURE = "5a" * 64  # of the set-up commands; never checked by the state machine (verified before the log)
TRANSFERS_PER_ENTRY = 1000
ID_EPOCH_MS = 1_780_000_000_000  # the pre-built history's ids start at this time
ENTRIES_PER_TXN = 16
BEGIN = "<!-- history:begin -->"
END = "<!-- history:end -->"


def account(i: int) -> str:
    return hashlib.sha256(i.to_bytes(8, "big")).hexdigest()


def prebuilt_entries(transfers: int, accounts: int) -> Iterator[bytes]:
    """Configure the bench minter, create HIST, fund every account, then `transfers` random
    transfers of 1 between distinct accounts (all succeed: each account starts with 10^12)."""
    pk = public_hex(MINTER)
    yield encode_entry(configure_entry([pk]))
    yield encode_entry(
        Entry(commands=(CreateCurrency(id="e0" * 16, minter=pk, code=CURRENCY, scale=0, signature=SIGNATURE),))
    )
    for start in range(0, accounts, 8190):
        yield encode_entry(
            Entry(
                commands=tuple(
                    Mint(
                        id=f"e1{i:030x}",
                        minter=pk,
                        to=account(i),
                        currency=CURRENCY,
                        amount=10**12,
                        signature=SIGNATURE,
                    )
                    for i in range(start, min(accounts, start + 8190))
                )
            )
        )
    keys = [account(i) for i in range(accounts)]
    # Ids as the clients make them (client.new_id: milliseconds, then random; here 16 transfers a
    # millisecond) and random signatures: as large, and as incompressible, as real ones.
    rng = random.Random(transfers)
    for start in range(0, transfers, TRANSFERS_PER_ENTRY):
        commands = []
        for n in range(start, min(transfers, start + TRANSFERS_PER_ENTRY)):
            a = rng.randrange(accounts)
            b = (a + 1 + rng.randrange(accounts - 1)) % accounts
            commands.append(
                Transfer(
                    id=f"{ID_EPOCH_MS + n // 16:012x}{rng.randbytes(10).hex()}",
                    from_=keys[a],
                    to=keys[b],
                    currency=CURRENCY,
                    amount=1,
                    signature=rng.randbytes(64).hex(),
                )
            )
        yield encode_entry(Entry(commands=tuple(commands)))


def build_store(path: str, transfers: int, accounts: int) -> int:
    """Apply the pre-built entries (Raft indexes from 2: index 1 is the founding snapshot) in
    groups, as the disk thread would; returns the last index."""
    ledger = LedgerMachine(path)
    index = 1
    group: list[tuple[int, bytes | None]] = []
    for data in prebuilt_entries(transfers, accounts):
        index += 1
        group.append((index, data))
        if len(group) == ENTRIES_PER_TXN:
            ledger.apply(group)
            group = []
    if group:
        ledger.apply(group)
    ledger.sync()
    ledger.close()
    return index


def seed_node(cluster: LocalCluster, i: int, store: str, index: int) -> None:
    """Node i's data directory: a copy of the store and a journal compacted up to its index."""
    data = cluster.data_dir(i)
    os.makedirs(os.path.join(data, "raft"), exist_ok=True)
    shutil.copyfile(store, os.path.join(data, "ledger.lmdb"))
    peers = {n + 1: address for n, address in enumerate(cluster.raft_addresses)}
    conf = ConfState(voters=frozenset(peers), addresses=tuple(sorted(peers.items())))
    log = DiskLog(os.path.join(data, "raft", "log"))
    log.bootstrap(SnapshotMeta(index, 1, conf), HardState(term=1, commit=index))
    log.close()


def _ready(cluster: LocalCluster, i: int) -> bool:
    try:
        return httpx.get(cluster.urls[i] + "/readyz", timeout=1, verify=cluster.verify).status_code == 200
    except httpx.HTTPError:
        return False


def disk_bytes(cluster: LocalCluster, i: int) -> int:
    """Store + journal (+ anything else) in node i's data directory."""
    total = 0
    for root, _, files in os.walk(cluster.data_dir(i)):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def seconds_to_ready_after_sigkill(cluster: LocalCluster, i: int, timeout: float = 120) -> float:
    cluster.kill(i, signal.SIGKILL)
    started = time.monotonic()
    cluster.start(i)
    while not _ready(cluster, i):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"node {i} not ready {timeout}s after a restart\n{cluster.tail(i)}")
        time.sleep(0.02)
    return time.monotonic() - started


async def catch_up_under_writes(
    cluster: LocalCluster, driver: WalletDriver, workload: Workload, follower: int, seconds: float, timeout: float
) -> dict[str, Any]:
    """Wipe `follower` and restart it while a writer keeps going; time until it has applied the
    leader's commit index as of its start."""
    cluster.kill(follower, signal.SIGKILL)
    shutil.rmtree(cluster.data_dir(follower))
    leader = node_status(cluster, cluster.urls.index(await driver.find_leader()))
    assert leader is not None, "the leader stopped answering"
    target = leader["commit_index"]
    driver.pids = [cluster.processes[i].pid for i in range(cluster.size) if i != follower]
    prepared = driver.prepare(workload.batches(int(seconds * 40) + 1, f"catch-up-{follower}"))
    writes = asyncio.create_task(loadgen.closed_loop(driver, prepared, 2, seconds))
    started = time.monotonic()
    cluster.start(follower)
    result: dict[str, Any] = {"completed": False, "seconds": None, "leader_commit_index": target}
    while time.monotonic() - started < timeout:
        status = await asyncio.to_thread(node_status, cluster, follower)
        if status and status["applied_index"] >= target:
            result.update(completed=True, seconds=round(time.monotonic() - started, 2))
            break
        await asyncio.sleep(0.05)
    step = await writes
    result["writes_during_catch_up_per_s"] = round(step.transfers_per_s)
    result["store_mib"] = round(os.path.getsize(os.path.join(cluster.data_dir(follower), "ledger.lmdb")) / MIB, 1)
    return result


def accounts_for(transfers: int) -> int:
    return max(10, transfers // 10)


def prebuilt_store(stores: str, transfers: int) -> tuple[str, int, float]:
    """The store of `transfers` in the directory `stores`, built unless it is there already
    (`--build-only` builds them outside the timed run); (path, last index, seconds to build)."""
    path = os.path.join(stores, f"history-{transfers}.lmdb")
    if os.path.exists(path):
        machine = LedgerMachine(path)
        index = machine.applied_index()
        machine.close()
        return path, index, 0.0
    started = time.monotonic()
    index = build_store(path + ".part", transfers, accounts_for(transfers))
    os.replace(path + ".part", path)
    os.unlink(path + ".part-lock")
    return path, index, time.monotonic() - started


async def measure_size(work: str, transfers: int, args: argparse.Namespace) -> dict[str, Any]:
    accounts = accounts_for(transfers)
    store, index, built_s = prebuilt_store(args.stores or work, transfers)
    print(f"  {transfers:,} transfers between {accounts:,} accounts: store ready ({built_s:.0f} s)", flush=True)
    cluster = LocalCluster(os.path.join(work, "cluster"), [public_hex(MINTER)], 3)
    for i in range(cluster.size):
        seed_node(cluster, i, store, index)
    result: dict[str, Any] = {"transfers": transfers, "accounts": accounts, "store_bytes": os.path.getsize(store)}
    workload = Workload(accounts=args.workload_accounts, batch_size=args.batch)
    signer = Signer(workload)
    cluster.start_all()
    try:
        cluster.wait_ready(timeout=120)
        driver = WalletDriver(cluster.urls, [p.pid for p in cluster.processes.values()], tls=cluster.verify)
        await driver.open()
        try:
            await driver.fund(workload, signer)
            runs = []
            for r in range(args.rounds):
                prepared = driver.prepare(
                    workload.batches(int(args.seconds * args.guess_per_s / args.batch) + 1, f"r{r}")
                )
                runs.append(await loadgen.closed_loop(driver, prepared, args.concurrency, args.seconds))
            result["transfers_per_s"] = round(statistics.median(s.transfers_per_s for s in runs))
            result["server_cpu_ms_per_transfer"] = round(
                statistics.median(s.server_cpu_ms_per_transfer for s in runs), 4
            )
            result["failed"] = sum(s.failed for s in runs)
            rss = {i: rss_anon_bytes(cluster.processes[i].pid) for i in range(cluster.size)}
            result["rss_anon_mib"] = [round(rss[i] / MIB, 1) for i in sorted(rss)]
            held = transfers + sum(s.transfers for s in runs)
            disk = [disk_bytes(cluster, i) for i in range(cluster.size)]
            result["disk_mib"] = [round(d / MIB, 1) for d in disk]
            result["disk_bytes_per_transfer"] = round(statistics.median(disk) / held, 1)
            leader = cluster.urls.index(await driver.find_leader())
            follower = next(i for i in range(cluster.size) if i != leader)
            result["ready_after_sigkill_s"] = {
                "follower": round(await asyncio.to_thread(seconds_to_ready_after_sigkill, cluster, follower), 2),
                "leader": round(await asyncio.to_thread(seconds_to_ready_after_sigkill, cluster, leader), 2),
            }
            now_leading = await driver.find_leader()  # the leader's restart may have moved leadership
            follower = next(i for i in range(cluster.size) if cluster.urls[i] != now_leading)
            result["catch_up"] = await catch_up_under_writes(
                cluster, driver, workload, follower, args.catch_up_writes_s, args.catch_up_timeout_s
            )
        finally:
            await driver.close()
    finally:
        signer.close()
        cluster.stop_all()
        shutil.rmtree(cluster.base_dir, ignore_errors=True)
    print(f"  {json.dumps(result)}", flush=True)
    return result


def markdown(results: dict[str, Any]) -> str:
    sizes = results["sizes"]
    lines = [
        BEGIN,
        f"Measured {results['generated']} at commit `{results['commit']}` with `{results['command']}` "
        f"({results['machine']['cores']} cores, {results['machine']['cpu_model']}, load average at start "
        f"{results['machine']['load_average_at_start']}). Each size: a fresh 3-node cluster "
        "started on a store already holding that many transfers; median of the rounds.",
        "",
        "| transfers applied | accounts | RssAnon MiB (per node) | disk B/transfer (store + journal) "
        "| transfers/s | server CPU ms/transfer | ready after SIGKILL (follower / leader) | wiped replica catch-up |",
        "|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for s in sizes:
        ready = s["ready_after_sigkill_s"]
        catch = s["catch_up"]
        caught = f"{catch['seconds']} s ({catch['store_mib']} MiB)" if catch["completed"] else "**did not finish**"
        lines.append(
            f"| {s['transfers']:,} | {s['accounts']:,} | {' / '.join(str(x) for x in s['rss_anon_mib'])} "
            f"| {s['disk_bytes_per_transfer']:,} | {s['transfers_per_s']:,} | {s['server_cpu_ms_per_transfer']} "
            f"| {ready['follower']} s / {ready['leader']} s | {caught} |"
        )
    lines += ["", "![RSS, disk and throughput against transfers applied](../bench/history.png)", END, ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    x = [s["transfers"] for s in sizes]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    series = [
        ("RssAnon per node (MiB)", [max(s["rss_anon_mib"]) for s in sizes]),
        ("disk bytes per transfer", [s["disk_bytes_per_transfer"] for s in sizes]),
        ("transfers/s", [s["transfers_per_s"] for s in sizes]),
    ]
    for ax, (title, y) in zip(axes, series, strict=True):
        ax.plot(x, y, marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("transfers applied")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def update_doc(path: str, fragment: str) -> None:
    with open(path) as f:
        text = f.read()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + fragment.rstrip("\n") + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## A long history\n\n" + fragment
    with open(path, "w") as f:
        f.write(text)


async def run(args: argparse.Namespace, work: str, command: str) -> dict[str, Any]:
    results: dict[str, Any] = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "commit": machine.git_commit(),
        "machine": machine.describe(work, "not used"),
        "sizes": [],
    }
    for transfers in args.transfers:
        results["sizes"].append(await measure_size(work, transfers, args))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", default="10000,1000000,10000000", help="comma-separated history sizes")
    parser.add_argument("--rounds", type=int, default=3, help="throughput steps per size (median reported)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput step")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight in a throughput step")
    parser.add_argument("--batch", type=int, default=100, help="transfers per request")
    parser.add_argument("--workload-accounts", type=int, default=10_000, help="signing accounts of the live load")
    parser.add_argument("--guess-per-s", type=float, default=15000, help="transfers/s to prepare batches for")
    parser.add_argument("--catch-up-writes-s", type=float, default=20.0, help="seconds of writes during catch-up")
    parser.add_argument("--catch-up-timeout-s", type=float, default=300.0)
    parser.add_argument("--out-dir", default="bench")
    parser.add_argument("--work-dir", help="where the clusters' data go (default: a temporary directory)")
    parser.add_argument("--update-doc", metavar="FILE", help="rewrite the history section of FILE")
    parser.add_argument("--stores", help="directory of pre-built stores (history-N.lmdb), kept between runs")
    parser.add_argument("--build-only", action="store_true", help="only build the stores into --stores")
    args = parser.parse_args(argv)
    args.transfers = [int(x) for x in args.transfers.split(",")]
    if args.build_only:
        if not args.stores:
            parser.error("--build-only needs --stores")
        os.makedirs(args.stores, exist_ok=True)
        for transfers in args.transfers:
            print(f"{transfers:,} transfers: built in {prebuilt_store(args.stores, transfers)[2]:.0f} s", flush=True)
        return
    command = "python -m bench.history " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="bench-history-", dir=args.work_dir) as work:
        results = asyncio.run(run(args, work, command.strip()))
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "history.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    plot(results, os.path.join(args.out_dir, "history.png"))
    fragment = markdown(results)
    if args.update_doc:
        update_doc(args.update_doc, fragment)
    print(fragment)


if __name__ == "__main__":
    main()
