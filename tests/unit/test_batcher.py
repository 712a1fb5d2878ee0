"""Group commit logic, with a Raft stand-in whose callbacks the test controls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from walletnode.consensus.replicator import Outcome
from walletnode.ledger.commands import Transfer, decode_entry
from walletnode.server.batcher import GroupCommitter, OutcomeUnknown


class HeldRaft:
    """Records proposals and calls back only when the test says so (like a partitioned leader)."""

    def __init__(self) -> None:
        self.proposals: list[tuple[bytes, Any]] = []

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
