"""The asyncio load generator: closed-loop steps at rising concurrency, and one paced (open-loop) step.

A closed-loop step runs N tasks, each sending prepared batches back to back for T seconds; the
concurrency doubles until throughput stops growing. Latency "at 50% load" comes from a paced step:
batches are released on a fixed schedule at half the peak rate and latency counts from the
scheduled time, so a slow answer cannot hide by delaying the next request (coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .drivers import BatchResult, Driver
from .procfs import own_cpu_seconds, total_cpu_seconds


def percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(1000 * percentile(ordered, 0.50), 2),
        "p99": round(1000 * percentile(ordered, 0.99), 2),
        "max": round(1000 * ordered[-1], 2) if ordered else 0.0,
    }


@dataclass
class StepResult:
    """One measured step. Latencies are per transfer (from the moment its batch was sent, or was
    due, until its outcome was known); batch latency is until the whole batch was answered."""

    system: str
    concurrency: int | None  # None for a paced step
    offered_per_s: float | None  # paced steps: the transfer rate the schedule asked for
    seconds: float
    transfers: int
    failed: int
    conflicts: int
    transfers_per_s: float
    latency_ms: dict[str, float]
    batch_latency_ms: dict[str, float]
    server_cpu_ms_per_transfer: float
    loadgen_cpu_ms_per_transfer: float
    ran_out_of_batches: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Meter:
    """Collects batch results and the CPU of the servers and of this process over one step."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.latencies: list[float] = []
        self.batch_latencies: list[float] = []
        self.ok = self.failed = self.conflicts = 0
        self.started = time.perf_counter()
        self._server_cpu = total_cpu_seconds(driver.server_pids())
        self._own_cpu = own_cpu_seconds()
        self._retried = getattr(driver, "retried", 0)

    def add(self, result: BatchResult, late_by: float = 0.0) -> None:
        self.ok += result.ok
        self.failed += result.failed
        self.conflicts += result.conflicts
        self.latencies.extend(x + late_by for x in result.latencies)
        self.batch_latencies.append(max(result.latencies, default=0.0) + late_by)

    def finish(self, concurrency: int | None, offered: float | None, ran_out: bool) -> StepResult:
        elapsed = time.perf_counter() - self.started
        server_cpu = total_cpu_seconds(self.driver.server_pids()) - self._server_cpu
        own_cpu = own_cpu_seconds() - self._own_cpu
        per = max(self.ok, 1)
        return StepResult(
            system=self.driver.name,
            concurrency=concurrency,
            offered_per_s=offered,
            seconds=round(elapsed, 3),
            transfers=self.ok,
            failed=self.failed,
            conflicts=self.conflicts,
            transfers_per_s=round(self.ok / elapsed, 1),
            latency_ms=summary_ms(self.latencies),
            batch_latency_ms=summary_ms(self.batch_latencies),
            server_cpu_ms_per_transfer=round(1000 * server_cpu / per, 4),
            loadgen_cpu_ms_per_transfer=round(1000 * own_cpu / per, 4),
            ran_out_of_batches=ran_out,
            extra={"requests_retried": getattr(self.driver, "retried", 0) - self._retried},
        )


async def closed_loop(driver: Driver, prepared: Sequence[Any], concurrency: int, seconds: float) -> StepResult:
    """`concurrency` tasks send batches back to back until `seconds` have passed (or the prepared
    batches run out); batches in flight at the deadline are waited for and counted."""
    meter = _Meter(driver)
    deadline = meter.started + seconds
    cursor = iter(prepared)
    ran_out = False

    async def worker() -> None:
        nonlocal ran_out
        while time.perf_counter() < deadline:
            item = next(cursor, None)
            if item is None:
                ran_out = True
                return
            meter.add(await driver.submit(item))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return meter.finish(concurrency, None, ran_out)


async def paced(
    driver: Driver,
    prepared: Sequence[Any],
    batches_per_s: float,
    batch_size: int,
    seconds: float,
    max_in_flight: int = 512,
) -> StepResult:
    """Release batch k at start + k / batches_per_s, whether or not earlier ones were answered."""
    meter = _Meter(driver)
    start = meter.started
    tasks: set[asyncio.Task[None]] = set()
    dropped = 0

    async def send(item: Any, due: float) -> None:
        late_by = time.perf_counter() - due
        meter.add(await driver.submit(item), late_by)

    count = min(len(prepared), int(batches_per_s * seconds))
    for k in range(count):
        due = start + k / batches_per_s
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_in_flight:  # far past saturation: do not build an unbounded backlog
            dropped += 1
            continue
        task = asyncio.create_task(send(prepared[k], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    result = meter.finish(None, round(batches_per_s * batch_size, 1), count < int(batches_per_s * seconds))
    result.extra["batches_not_sent_backlog_full"] = dropped
    return result


async def sweep(
    driver: Driver,
    prepare: Callable[[int, str], Sequence[Any]],
    steps: Sequence[int],
    seconds: float,
    batch_size: int,
    first_guess_per_s: float,
    salt: str,
    min_gain: float = 0.05,
    patience: int = 2,
) -> list[StepResult]:
    """Closed-loop steps at the given concurrencies until throughput grows less than `min_gain`
    over the best so far `patience` times in a row. `prepare(count, salt)` makes the batches of a
    step before its clock starts; the same salt gives both systems the same transfers."""
    results: list[StepResult] = []
    best = 0.0
    flat = 0
    for concurrency in steps:
        expected = max(best, first_guess_per_s) * 2.5 * seconds
        count = int(expected / batch_size) + 2 * concurrency
        prepared = prepare(count, f"{salt}/c{concurrency}")
        step = await closed_loop(driver, prepared, concurrency, seconds)
        results.append(step)
        if step.transfers_per_s < best * (1 + min_gain):
            flat += 1
            if flat >= patience:
                break
        else:
            flat = 0
        best = max(best, step.transfers_per_s)
    return results
