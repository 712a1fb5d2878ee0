"""The evaluation workload: N client threads, 100×N funded wallets, random transfers for T seconds.

Used by `walletctl bench`; measures what a client sees (request latency, transfers per second).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

from nacl.signing import SigningKey

from .client import ClientError, WalletClient, new_id
from .ledger.codes import APPLIED
from .ledger.commands import Mint
from .ledger.signing import public_hex, sign

CURRENCY = "BENCH"


@dataclass(frozen=True)
class LoadResult:
    replicas: int | None
    threads: int
    seconds: float
    transfers: int
    errors: int
    transfers_per_s: float
    latency_ms: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fund(
    urls: Sequence[str],
    minter: SigningKey,
    wallets: Sequence[SigningKey],
    amount: int,
    progress: Callable[[int], None] = lambda n: None,
    trust: Mapping[str, Any] = MappingProxyType({}),
) -> None:
    """Create the bench currency (if needed) and mint `amount` to every wallet, in batches.
    `trust`: the client's ca/insecure/node_keys (see WalletClient)."""
    with WalletClient(urls, deadline_s=120, timeout_s=120, **trust) as client:
        if client.create_currency(minter, CURRENCY, 0) not in ("ok", "currency_exists"):
            raise ClientError("could not create the bench currency (is --as a minter?)")
        for start in range(0, len(wallets), 500):
            chunk = wallets[start : start + 500]
            mints = [
                sign(
                    minter,
                    client.cluster_id,
                    Mint(
                        id=new_id(),
                        minter=public_hex(minter),
                        to=public_hex(w),
                        currency=CURRENCY,
                        amount=amount,
                        signature="0" * 128,
                    ),
                )
                for w in chunk
            ]
            results = client.submit(mints)
            if any(r != "ok" for r in results):
                raise ClientError(f"funding failed: {sorted(set(results))}")
            progress(len(chunk))


def run(
    urls: Sequence[str],
    minter: SigningKey,
    threads: int,
    seconds: float,
    replicas: int | None = None,
    progress: Callable[[int], None] = lambda n: None,
    trust: Mapping[str, Any] = MappingProxyType({}),
) -> LoadResult:
    wallets = [SigningKey.generate() for _ in range(100 * threads)]
    fund(urls, minter, wallets, 10**12, progress, trust)
    publics = [public_hex(w) for w in wallets]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    start_line = threading.Barrier(threads + 1)
    deadline = [0.0]

    def worker(n: int) -> None:
        rng = random.Random(n)
        with WalletClient(urls, **trust) as client:
            client.follow_leader()
            assert client.cluster_id  # fetched now, not inside the measured loop
            start_line.wait()
            while time.monotonic() < deadline[0]:
                a, b = rng.sample(range(len(wallets)), 2)
                transfer = client.signed_transfer(wallets[a], publics[b], CURRENCY, 1)
                t0 = time.perf_counter()
                try:
                    # "exists" answers a retry of an applied id: the transfer happened once.
                    ok = client.submit([transfer])[0] in APPLIED
                except ClientError:
                    ok = False
                latencies[n].append(time.perf_counter() - t0)
                errors[n] += not ok

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    deadline[0] = time.monotonic() + seconds
    start_line.wait()
    began = time.monotonic()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - began
    merged = sorted(x for per in latencies for x in per)
    done = len(merged) - sum(errors)

    def pct(q: float) -> float:
        return round(1000 * merged[min(len(merged) - 1, int(q * len(merged)))], 2) if merged else 0.0

    return LoadResult(
        replicas=replicas,
        threads=threads,
        seconds=round(elapsed, 2),
        transfers=done,
        errors=sum(errors),
        transfers_per_s=round(done / elapsed, 1),
        latency_ms={
            "p50": pct(0.50),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "max": round(1000 * merged[-1], 2) if merged else 0.0,
            "mean": round(1000 * statistics.fmean(merged), 2) if merged else 0.0,
        },
    )


def plot(results: Sequence[LoadResult], path: str) -> None:
    """Throughput and latency percentiles per cluster size, side by side, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.replicas} replica{'s' if r.replicas != 1 else ''}" if r.replicas else "cluster" for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    bars = left.bar(labels, [r.transfers_per_s for r in results], color="#3b7dd8")
    left.bar_label(bars, fmt="%.0f")
    left.set_title(f"Throughput ({results[0].threads} client threads, {results[0].seconds:.0f}s)")
    left.set_ylabel("transfers / s")
    width = 0.2
    for k, q in enumerate(("p50", "p95", "p99", "max")):
        right.bar(
            [i + (k - 1.5) * width for i in range(len(results))], [r.latency_ms[q] for r in results], width, label=q
        )
    right.set_xticks(range(len(results)), labels)
    right.set_yscale("log")
    right.set_ylabel("request latency (ms, log scale)")
    right.set_title("Latency percentiles")
    right.legend()
    fig.suptitle("walletctl bench: random transfers between 100×threads wallets, fsync on")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
