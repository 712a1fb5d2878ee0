"""Writes while a member joins: `python -m bench.promotion [--runs N]`.

A three-node cluster on 127.0.0.1 takes a stream of single transfers, one at a time. A fourth node
starts empty and asks to be added (`--join`): it joins as a learner, receives a snapshot and the
log, and the leader promotes it to voter once it holds every committed entry. Printed per run:
the longest gap between two acknowledged writes from the moment the node was started until a
second after its promotion, the same in the second before (the write latency with no join), and
how long the promotion took; the heartbeat is 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time

import httpx
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster, free_ports

from .workload import MINTER

HEARTBEAT_S = 0.1


def longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def one_run(preload: int) -> tuple[float, float, float]:
    """(longest gap in the second before the join, longest gap during it, seconds to promotion)"""
    with tempfile.TemporaryDirectory(prefix="promotion-") as work:
        cluster = LocalCluster(work, [public_hex(MINTER)], 3, extra_args=("--snapshot-entries", "200"))
        cluster.start_all()
        http_port, raft_port, admin_port = free_ports(3)
        newcomer = f"127.0.0.1:{raft_port}"
        joiner = None
        try:
            cluster.wait_ready(timeout=60)
            alice, bob = SigningKey.generate(), SigningKey.generate()
            with WalletClient(cluster.urls, **cluster.trust) as client:
                assert client.create_currency(MINTER, "USD", 2) == "ok"
                assert client.mint(MINTER, public_hex(alice), "USD", 10**12) == "ok"
                for _ in range(preload):  # a log long enough to be compacted: the learner needs a snapshot
                    client.submit([client.signed_transfer(alice, public_hex(bob), "USD", 1) for _ in range(50)])
            acknowledged: list[float] = []
            stop = threading.Event()

            def writer() -> None:
                with WalletClient(cluster.urls, **cluster.trust) as c:
                    while not stop.is_set():
                        assert c.transfer(alice, public_hex(bob), "USD", 1) == "ok"
                        acknowledged.append(time.monotonic())

            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(1)
            started = time.monotonic()
            joiner = subprocess.Popen(
                cluster.join_command(http_port, raft_port, admin_port),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            promoted = _wait_promoted(cluster, newcomer)
            time.sleep(1)
            stop.set()
            thread.join(timeout=30)
        finally:
            if joiner is not None:
                joiner.kill()
                joiner.wait()
            cluster.stop_all()
    before = longest_gap([t for t in acknowledged if started - 1 <= t <= started])
    during = longest_gap([t for t in acknowledged if started <= t <= promoted + 1])
    return before, during, promoted - started


def _wait_promoted(cluster: LocalCluster, address: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for url in cluster.urls:
            try:
                status = httpx.get(url + "/v1/status", timeout=1, verify=cluster.verify).json()
            except (httpx.HTTPError, ValueError):
                continue
            if status["role"] == "leader" and any(
                m["raft_address"] == address and m["voter"] for m in status["members"]
            ):
                return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"{address} was not promoted within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--preload", type=int, default=100, help="batches of 50 transfers before the join")
    args = parser.parse_args()
    before, during, promotions = [], [], []
    for run in range(args.runs):
        quiet, gap, promotion = one_run(args.preload)
        before.append(quiet)
        during.append(gap)
        promotions.append(promotion)
        print(
            f"run {run + 1}: longest write gap {gap * 1000:.0f} ms while joining, {quiet * 1000:.0f} ms in the "
            f"second before; promoted {promotion:.2f} s after start",
            flush=True,
        )
    print(
        f"longest write gap while joining: median {statistics.median(during) * 1000:.0f} ms, max "
        f"{max(during) * 1000:.0f} ms; the second before: median {statistics.median(before) * 1000:.0f} ms "
        f"(heartbeat {HEARTBEAT_S * 1000:.0f} ms); promotion median {statistics.median(promotions):.2f} s"
    )


if __name__ == "__main__":
    main()
