"""Group commit logic, with a Raft stand-in whose callbacks the test controls."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from walletnode.consensus.replicator import Outcome
from walletnode.ledger.commands import Transfer, decode_entry
from walletnode.server.batcher import GroupCommitter, OutcomeUnknown, Unavailable


class HeldRaft:
    """Records proposals and calls back only when the test says so (like a partitioned leader).
    A leader with a quorum is known until the test calls `lose_quorum`."""

    election_timeout_s = 0.05

    def __init__(self) -> None:
        self.proposals: list[tuple[bytes, Any]] = []
        self.leader_with_quorum_known = True
        self._lost_at: float | None = None

    def quorum_known_at(self) -> float:
        return time.monotonic() if self._lost_at is None else self._lost_at

    def lose_quorum(self) -> None:
        self.leader_with_quorum_known = False
        self._lost_at = time.monotonic()

    def propose(self, entry: bytes, callback: Any) -> None:
        self.proposals.append((entry, callback))

    def commit(self, i: int) -> None:
        entry, callback = self.proposals[i]
        callback(["ok"] * len(decode_entry(entry).commands), Outcome.APPLIED)


def transfer(n: int) -> Transfer:
    return Transfer(id=f"{n:032x}", from_="a" * 64, to="b" * 64, currency="USD", amount=1, signature="0" * 128)


def test_queued_requests_are_grouped_and_answered_in_order() -> None:
    async def scenario() -> None:
        raft = HeldRaft()
        committer = GroupCommitter(raft, max_inflight=1)  # type: ignore[arg-type]
        first = asyncio.ensure_future(committer.submit([transfer(0)]))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(committer.submit([transfer(i), transfer(i + 100)])) for i in range(1, 6)]
        await asyncio.sleep(0)
        assert len(raft.proposals) == 1, "one entry in flight; the others wait"
        raft.commit(0)
        assert await first == ["ok"]
        await asyncio.sleep(0)
        assert len(raft.proposals) == 2 and len(decode_entry(raft.proposals[1][0]).commands) == 10
        raft.commit(1)
        assert [await r for r in rest] == [["ok", "ok"]] * 5

    asyncio.run(scenario())


def test_entries_that_never_answer_do_not_block_later_requests() -> None:
    async def scenario() -> None:
        raft = HeldRaft()
        committer = GroupCommitter(raft, max_inflight=2, timeout_s=0.05)  # type: ignore[arg-type]
        for i in range(4):
            with pytest.raises(OutcomeUnknown):
                await committer.submit([transfer(i)])
        later = asyncio.ensure_future(committer.submit([transfer(99)]))
        await asyncio.sleep(0.01)
        assert len(raft.proposals) == 5, "timed-out entries must free their in-flight slots"
        raft.commit(4)
        assert await later == ["ok"]

    asyncio.run(scenario())


def test_without_a_leader_nothing_is_proposed_and_requests_end_unavailable_soon() -> None:
    async def scenario() -> None:
        raft = HeldRaft()
        committer = GroupCommitter(raft, timeout_s=5)  # type: ignore[arg-type]
        raft.lose_quorum()
        started = time.monotonic()
        held = asyncio.ensure_future(committer.submit([transfer(1)]))
        reading = asyncio.ensure_future(committer.read_barrier())
        for waiting in (held, reading):
            with pytest.raises(Unavailable):
                await waiting
        assert time.monotonic() - started < 1.0, "an election timeout, not the 5 s timeout"
        assert raft.proposals == [], "held, never proposed: nothing can have been applied"
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await committer.submit([transfer(2)])
        assert time.monotonic() - started < 0.01, "once the quorum is known lost, at once"

    asyncio.run(scenario())


def test_a_request_held_without_a_leader_goes_once_one_is_known() -> None:
    async def scenario() -> None:
        raft = HeldRaft()
        committer = GroupCommitter(raft)  # type: ignore[arg-type]
        raft.leader_with_quorum_known = False  # no leader for a moment, as in an election
        held = asyncio.ensure_future(committer.submit([transfer(1)]))
        await asyncio.sleep(0.03)
        assert raft.proposals == []
        raft.leader_with_quorum_known = True
        await asyncio.sleep(0.05)
        raft.commit(0)
        assert await held == ["ok"]

    asyncio.run(scenario())


def test_a_request_whose_client_went_away_leaves_no_unretrieved_exception() -> None:
    async def scenario() -> None:
        reported: list[str] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context["message"]))
        raft = HeldRaft()
        committer = GroupCommitter(raft, timeout_s=5)  # type: ignore[arg-type]
        raft.leader_with_quorum_known = False  # requests are held
        for waiter in (committer.submit([transfer(1)]), committer.read_barrier()):
            task = asyncio.ensure_future(waiter)
            await asyncio.sleep(0.01)
            task.cancel()  # the HTTP client disconnected: aiohttp cancels the handler
        raft.lose_quorum()
        await asyncio.sleep(0.3)  # the committer gives up on what it held
        gc.collect()
        assert reported == [] and raft.proposals == []

    asyncio.run(scenario())
