"""Failover: time from SIGKILL of the leader to the first write the cluster accepts.

The transfer is signed before the kill. The surviving nodes are asked in turn, every 10 ms, each
attempt with a 1 s timeout, until one answers `ok`: that is when a client could write again. The
killed node is then restarted and the cluster given time to settle before the next run.
"""

from __future__ import annotations

import signal
import statistics
import time
from typing import Any

import httpx
import msgspec

from walletnode.client import new_id
from walletnode.ledger.commands import Transfer
from walletnode.ledger.signing import public_hex, sign
from walletnode.localcluster import LocalCluster

from .workload import CURRENCY, PLACEHOLDER, Workload, account_key, wire


def _leader(cluster: LocalCluster, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = cluster.leader()
        if leader is not None:
            return leader
        time.sleep(0.05)
    raise RuntimeError("no leader")


def measure(cluster: LocalCluster, workload: Workload, cluster_id: str, runs: int) -> dict[str, Any]:
    """`runs` leader kills on a running, funded cluster; seconds to the first accepted transfer."""
    times = []
    with httpx.Client(timeout=1.0, verify=cluster.verify) as http:
        for run in range(runs):
            leader = _leader(cluster)
            survivors = [u for i, u in enumerate(cluster.urls) if i != leader]
            sender = account_key(workload.seed, run)
            transfer = sign(
                sender,
                cluster_id,
                Transfer(
                    id=new_id(),
                    from_=public_hex(sender),
                    to=public_hex(account_key(workload.seed, run + 1)),
                    currency=CURRENCY,
                    amount=workload.amount,
                    signature=PLACEHOLDER,
                ),
            )
            body = msgspec.json.encode({"commands": [wire(transfer)]})
            cluster.kill(leader, signal.SIGKILL)
            killed = time.monotonic()
            attempt = 0
            while True:
                url = survivors[attempt % len(survivors)]
                attempt += 1
                try:
                    r = http.post(url + "/v1/transfers", content=body, headers={"Content-Type": "application/json"})
                    if r.status_code == 200 and r.json()["results"][0]["result"] in ("ok", "exists"):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - killed > 60:
                    raise RuntimeError(f"no write accepted within 60 s of killing the leader\n{cluster.diagnose()}")
                time.sleep(0.01)
            times.append(time.monotonic() - killed)
            cluster.start(leader)
            cluster.wait_ready(timeout=60)
    return {
        "runs": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "method": "SIGKILL the leader, then send one pre-signed transfer to the survivors in turn (every "
        "10 ms, 1 s timeout per attempt) until one answers ok; election timeout 500-1000 ms, heartbeat 100 ms",
    }
