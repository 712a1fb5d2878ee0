"""Committed entries that queue up while the disk thread is busy are applied together, in one
call of the state machine (fewer, fuller LMDB transactions), and every proposal still gets its own
result, in order; under a steady stream the store is published once per PUBLISH_EVERY_S, not more
often."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from walletnode.consensus.replicator import MAX_APPLYING, PUBLISH_EVERY_S, Outcome, Replicator
from walletnode.ledger.codes import Code
from walletnode.localcluster import free_ports
from walletnode.server.machine import LedgerMachine

from .test_snapshot_install import entries


class GatedMachine(LedgerMachine):
    """A ledger machine whose applies wait while `gate` is closed; it records the Raft indexes of
    every call."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[list[int]] = []

    def apply_unpublished(self, entries: Sequence[tuple[int, bytes | None]]) -> list[list[Code] | None]:
        self.calls.append([index for index, _ in entries])
        assert self.gate.wait(10), "the test never opened the gate"
        return super().apply_unpublished(entries)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_groups_queued_behind_a_busy_apply_go_in_one_call_and_each_proposal_gets_its_result(
    tmp_path: Path,
) -> None:
    machine = GatedMachine(str(tmp_path / "ledger.lmdb"))
    node = Replicator(1, "c", {1: f"127.0.0.1:{free_ports(1)[0]}"}, True, str(tmp_path / "raft"), "s" * 16, machine)
    ledger_entries = [data for _, data in entries(2 + MAX_APPLYING - 2)]  # configure, currency, mints
    answers: list[tuple[int, object, Outcome]] = []

    async def run() -> None:
        await node.start()
        try:
            await until(lambda: node.is_leader and node.settled == node.core.log.committed)
            machine.gate.clear()
            before = len(machine.calls)
            for i, data in enumerate(ledger_entries):
                assert data is not None
                node.propose(data, lambda result, outcome, i=i: answers.append((i, result, outcome)))
                # Each proposal commits in a Ready of its own and is handed to the disk thread,
                # where the first one holds the thread.
                index = node.core.log.last_index()
                await until(lambda index=index: node.core.log.applied >= index and len(machine.calls) > before)
            assert len(machine.calls) == before + 1, "only the first group reached the machine"
            machine.gate.set()
            await until(lambda: len(answers) == len(ledger_entries))
            blocked, *rest = machine.calls[before:]
            assert len(rest) == 1, f"the queued groups in one call: {machine.calls[before:]}"
            assert rest[0] == list(range(blocked[-1] + 1, blocked[-1] + len(ledger_entries)))
        finally:
            await node.stop()

    asyncio.run(run())
    machine.close()
    assert [i for i, _, _ in answers] == list(range(len(ledger_entries))), "answered in order"
    assert all(outcome is Outcome.APPLIED for _, _, outcome in answers), answers
    # The configure entry holds no command; each later one a command that succeeded.
    assert [result for _, result, _ in answers] == [[]] + [[Code.OK]] * (len(ledger_entries) - 1)


class TimedMachine(LedgerMachine):
    """A ledger machine that notes when each publish stored something."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.published_at: list[float] = []

    def publish(self) -> int:
        storing = self.unpublished_bytes() > 0
        index = super().publish()
        if storing:
            self.published_at.append(time.monotonic())
        return index


def test_a_steady_stream_is_published_once_per_period(tmp_path: Path) -> None:
    """Each publish is a commit plus a write of every account row it changed, so units cut short
    cost more per transfer (a timer armed before the last publish used to cut every other one)."""
    machine = TimedMachine(str(tmp_path / "ledger.lmdb"))
    node = Replicator(1, "c", {1: f"127.0.0.1:{free_ports(1)[0]}"}, True, str(tmp_path / "raft"), "s" * 16, machine)
    ledger_entries = [data for _, data in entries(80)]
    answers: list[Outcome] = []

    async def run() -> list[float]:
        await node.start()
        try:
            await until(lambda: node.is_leader and node.settled == node.core.log.committed)
            machine.publish()  # whatever the start wrote
            started = len(machine.published_at)
            for data in ledger_entries:  # one entry every 20 ms for 1.6 s
                assert data is not None
                node.propose(data, lambda result, outcome: answers.append(outcome))
                await asyncio.sleep(0.02)
            await until(lambda: len(answers) == len(ledger_entries))
            await until(lambda: node.published == node.applied)  # the last unit, by the timer
            return machine.published_at[started:]
        finally:
            await node.stop()

    published = asyncio.run(run())
    machine.close()
    assert all(outcome is Outcome.APPLIED for outcome in answers), answers
    gaps = [b - a for a, b in zip(published, published[1:], strict=False)]
    assert len(published) >= 3, published
    assert min(gaps) >= PUBLISH_EVERY_S * 0.8, f"publishes {PUBLISH_EVERY_S} s apart at least: {gaps}"
