"""Memory per account, and how long a fresh replica takes to catch up from a snapshot.

One three-node cluster (fsync on, frequent snapshots) is filled in steps to 1k, 100k and 1M
accounts, each created by one mint (so an account costs its balance, its history entry and the
mint's idempotency record: what a real account costs at least). After each step the RSS of every
node minus its own RSS with no accounts, divided by the accounts, gives bytes per account (the
median node is reported). Then a follower is stopped, its data directory wiped and the node
started again: the time until it has applied everything the leader committed is the catch-up.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import statistics
import time
from typing import Any

import httpx

from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster

from .drivers import APPLIED, WalletDriver
from .procfs import rss_bytes
from .workload import MINTER, Signer

MIB = 1 << 20


def node_status(cluster: LocalCluster, i: int) -> dict[str, Any] | None:
    try:
        r = httpx.get(cluster.urls[i] + "/v1/status", timeout=5, verify=cluster.verify)
        return dict(r.json()) if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def wait_applied(cluster: LocalCluster, nodes: list[int], timeout: float) -> None:
    """Until every given node has applied the leader's commit index."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = {i: node_status(cluster, i) for i in range(cluster.size)}
        leader = [s for s in statuses.values() if s and s["role"] == "leader"]
        if leader and all(
            statuses[i] and statuses[i]["applied_index"] >= leader[0]["commit_index"]  # type: ignore[index]
            for i in nodes
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nodes {nodes} did not apply the leader's commit index within {timeout}s")


async def _mint(driver: WalletDriver, signer: Signer, count: int, in_flight: int = 3) -> str:
    """Create `count` new accounts (random keys: receiving needs no private key), 8,190 mints a
    request; returns one of them."""
    recipients = [os.urandom(32).hex() for _ in range(count)]
    bodies = signer.mint_bodies(driver.cluster_id, recipients, 1, 8190)
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(in_flight)
    tasks = []

    async def post(body: bytes) -> None:
        try:
            results = await driver.post("/v1/mint", body)
        finally:
            gate.release()
        if any(r not in APPLIED for r in results):
            raise RuntimeError(f"minting failed: {sorted(set(results))}")

    while True:
        body = await loop.run_in_executor(None, next, bodies, None)  # signing happens in workers
        if body is None:
            break
        await gate.acquire()
        tasks.append(asyncio.create_task(post(body)))
    await asyncio.gather(*tasks)
    return recipients[0]


def _rss(cluster: LocalCluster) -> dict[int, int]:
    return {i: rss_bytes(cluster.processes[i].pid) for i in cluster.alive()}


async def measure(
    base_dir: str, sizes: list[int], signer: Signer, snapshot_entries: int, catch_up_timeout: float
) -> dict[str, Any]:
    """Fill a cluster step by step; after each step, RSS per account and a fresh replica's catch-up.
    A catch-up that fails leaves that replica stopped; later steps measure the two others."""
    cluster = LocalCluster(base_dir, [public_hex(MINTER)], 3, extra_args=("--snapshot-entries", str(snapshot_entries)))
    cluster.start_all()
    steps: list[dict[str, Any]] = []
    catch_ups: list[dict[str, Any]] = []
    try:
        cluster.wait_ready(timeout=60)
        driver = WalletDriver(cluster.urls, [p.pid for p in cluster.processes.values()], tls=cluster.verify)
        await driver.open()
        try:
            await driver.create_currency()
            wait_applied(cluster, list(range(cluster.size)), 30)
            await asyncio.sleep(1.0)
            empty = _rss(cluster)
            have = 0
            for size in sorted(sizes):
                started = time.monotonic()
                retried = driver.retried
                some_account = await _mint(driver, signer, size - have)
                have = size
                wait_applied(cluster, cluster.alive(), 600)
                minted_s = time.monotonic() - started
                await asyncio.sleep(1.0)
                rss = _rss(cluster)
                per_node = [(rss[i] - empty[i]) / size for i in sorted(rss)]
                steps.append(
                    {
                        "accounts": size,
                        "rss_mib_per_node": [round(rss[i] / MIB, 1) for i in sorted(rss)],
                        "bytes_per_account": round(statistics.median(per_node), 1),
                        "bytes_per_account_per_node": [round(x, 1) for x in per_node],
                        "mint_seconds": round(minted_s, 1),
                        "mint_requests_retried": driver.retried - retried,
                    }
                )
                print(
                    f"  {size:,} accounts: minted in {minted_s:.0f} s, {steps[-1]['bytes_per_account']:,.0f} B each",
                    flush=True,
                )
                if len(cluster.alive()) == cluster.size:
                    catch_ups.append(await _catch_up(cluster, driver, signer, size, some_account, catch_up_timeout))
                    print(f"  catch-up from a snapshot of {size:,} accounts: {catch_ups[-1]}", flush=True)
        finally:
            await driver.close()
    finally:
        cluster.stop_all()
    largest = catch_ups[-1] if catch_ups else {"accounts": have, "completed": False, "seconds": None}
    return {
        "memory_per_account": {
            "empty_node_rss_mib_per_node": [round(empty[i] / MIB, 1) for i in sorted(empty)],
            "sizes": steps,
            "method": "RSS (VmRSS) of each node minus its RSS before any account existed, divided by the "
            "accounts; median of the nodes. Each account was created by one mint.",
        },
        "catch_up": {
            **largest,
            "sizes": catch_ups,
            "method": "a follower is stopped, its data directory deleted and the node started again; time from "
            "starting the process until its applied index reaches the leader's commit index. The leader's "
            "snapshot covers every account, so the new replica must install it (its log is compacted).",
        },
    }


async def _compacted_past(
    cluster: LocalCluster, driver: WalletDriver, signer: Signer, leader: int, existing: str
) -> None:
    """Until the leader's journal is compacted past every account's creation (then a new replica
    must install a snapshot): the log is compacted only after --snapshot-entries entries, so small
    writes (1 unit minted to an existing account) are added until it is."""
    target = node_status(cluster, leader)
    assert target is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = node_status(cluster, leader)
        if status and status["first_log_index"] > target["commit_index"]:
            return
        body = next(signer.mint_bodies(driver.cluster_id, [existing], 1, 1))
        await driver.post("/v1/mint", body)
        await asyncio.sleep(0.05)
    raise TimeoutError("the leader did not compact its log past every account within 300 s")


async def _catch_up(
    cluster: LocalCluster, driver: WalletDriver, signer: Signer, accounts: int, existing: str, timeout: float
) -> dict[str, Any]:
    """Wipe a follower and time its return. Gives up after `timeout`, or after two minutes if the
    term has moved on 10 times by then: each election restarts the snapshot transfer from the start,
    so the replica is not going to make it (and it keeps disrupting the other two)."""
    leader = cluster.urls.index(await driver.find_leader())
    await _compacted_past(cluster, driver, signer, leader, existing)
    leader_store = node_status(cluster, leader)
    follower = next(i for i in range(cluster.size) if i != leader)
    cluster.kill(follower, signal.SIGTERM)
    shutil.rmtree(cluster.data_dir(follower))
    target = node_status(cluster, leader)
    assert target is not None
    incoming = os.path.join(cluster.data_dir(follower), "raft", "incoming.snapshot")
    received = 0
    started = time.monotonic()
    cluster.start(follower)
    result: dict[str, Any] = {"accounts": accounts, "completed": False, "seconds": None}
    terms = 0
    for poll in itertools.count():
        await asyncio.sleep(0.05)
        status = node_status(cluster, follower)
        if status and status["applied_index"] >= target["commit_index"]:
            result.update(completed=True, seconds=round(time.monotonic() - started, 2))
            break
        if os.path.exists(incoming):
            received = max(received, os.path.getsize(incoming))
        if poll % 20 == 0:
            statuses = [node_status(cluster, i) for i in range(cluster.size)]
            terms = max((s["term"] for s in statuses if s), default=target["term"]) - target["term"]
        if cluster.processes[follower].poll() is not None:
            raise RuntimeError(f"the catching-up node exited:\n{cluster.tail(follower)}")
        elapsed = time.monotonic() - started
        if elapsed > timeout or (terms >= 10 and elapsed > min(120.0, timeout / 2)):
            result["gave_up_after_s"] = round(time.monotonic() - started, 1)
            result["elections_during_catch_up"] = terms
            result["most_snapshot_mib_received"] = round(received / MIB, 1)
            cluster.kill(follower, signal.SIGKILL)  # it would keep disrupting the other two
            break
    result["snapshot_mib"] = round((leader_store or {}).get("store_bytes", 0) / MIB, 1)
    result["leader_commit_index"] = target["commit_index"]
    if result["completed"]:
        final = node_status(cluster, leader)
        result["elections_during_catch_up"] = (final["term"] - target["term"]) if final else None
    return result
