"""Throughput and latency of one client against a local three-node cluster (fsync on), and failover time.

One client sends pre-signed transfer batches of 1, 100 and 8,190 back to back (one request in
flight) to the leader; each configuration runs 5 times and reports the median throughput and the
p50/p99 request latency over all runs. Then the leader is SIGKILLed 5 times and the time to the
first accepted transfer is measured. Usage: python bench/node_throughput.py [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import tempfile
import time

import httpx
import msgspec
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster

MINTER = SigningKey(bytes([9]) * 32)
PLAN = {1: 1500, 100: 150, 8190: 4}  # batch size -> requests per run
RUNS = 5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_leader(cluster: LocalCluster) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leader = cluster.leader()
        if leader is not None:
            return leader
        time.sleep(0.05)
    raise RuntimeError("no leader")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    random.seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(tmp, [public_hex(MINTER)], 3)
        cluster.start_all()
        cluster.wait_ready(timeout=60)
        try:
            report = run(cluster)
        finally:
            cluster.stop_all()
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


def run(cluster: LocalCluster) -> dict[str, object]:
    senders = [SigningKey.generate() for _ in range(64)]
    receivers = [public_hex(SigningKey.generate()) for _ in range(64)]
    with WalletClient(cluster.urls, deadline_s=120, timeout_s=120) as client:
        client.create_currency(MINTER, "USD", 2)
        for s in senders:
            assert client.mint(MINTER, public_hex(s), "USD", 10**15) == "ok"
        report: dict[str, object] = {"machine": {"cpus": os.cpu_count()}, "batches": {}}
        leader = wait_leader(cluster)
        url = cluster.urls[leader]
        for batch, requests in PLAN.items():
            throughputs, latencies = [], []
            for _ in range(RUNS):
                bodies = []
                for _ in range(requests):
                    commands = [
                        client.signed_transfer(random.choice(senders), random.choice(receivers), "USD", 1)
                        for _ in range(batch)
                    ]
                    bodies.append(msgspec.json.encode({"commands": [_wire(c) for c in commands]}))
                with httpx.Client(timeout=120) as http:
                    start = time.perf_counter()
                    for body in bodies:
                        t0 = time.perf_counter()
                        r = http.post(url + "/v1/transfers", content=body, headers={"Content-Type": "application/json"})
                        latencies.append(time.perf_counter() - t0)
                        assert r.status_code == 200, r.text
                    elapsed = time.perf_counter() - start
                throughputs.append(batch * requests / elapsed)
            report["batches"][str(batch)] = {  # type: ignore[index]
                "transfers_per_s_median": round(statistics.median(throughputs)),
                "transfers_per_s_runs": [round(t) for t in throughputs],
                "request_latency_ms_p50": round(percentile(latencies, 0.5) * 1000, 2),
                "request_latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 2),
                "requests_per_run": requests,
            }
        failovers = []
        for _ in range(RUNS):
            leader = wait_leader(cluster)
            survivors = [u for i, u in enumerate(cluster.urls) if i != leader]
            sender = random.choice(senders)
            cluster.kill(leader, signal.SIGKILL)
            killed = time.monotonic()
            with WalletClient(survivors, deadline_s=30) as c:
                assert c.transfer(sender, random.choice(receivers), "USD", 1) == "ok"
            failovers.append(time.monotonic() - killed)
            cluster.start(leader)
            cluster.wait_ready(timeout=60)
        report["leader_kill_to_first_accepted_transfer_s"] = {
            "median": round(statistics.median(failovers), 3),
            "max": round(max(failovers), 3),
            "runs": [round(f, 3) for f in failovers],
        }
    return report


def _wire(command: object) -> dict[str, object]:
    data = msgspec.to_builtins(command)
    data.pop("kind", None)
    return data


if __name__ == "__main__":
    main()
