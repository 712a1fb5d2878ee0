"""Group commit: concurrent requests on one node become one Raft entry.

Requests queue here; whenever fewer than `max_inflight` entries are being replicated, everything
queued (up to `max_entry_commands`) is proposed as one entry. Under load, entries grow and fsyncs
are shared; when idle, a lone request is proposed at once. Linearizable reads queue the same way
and share one read barrier.

Nothing is handed to Raft while this node knows no leader with a quorum (`Replicator.
leader_with_quorum_known`): requests wait for one, and once none has been known for an election
timeout (the longest a follower waits before it campaigns; a dead leader is usually replaced in a
fraction of that, as its peers see its connections drop), every request
not yet handed over fails with `Unavailable` (nothing applied, safe to retry anywhere), and new
ones fail at once. A request already handed over keeps waiting for its outcome: only a timeout
makes it `OutcomeUnknown`, since its entry may have been appended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..consensus.replicator import Outcome, Replicator
from ..ledger.codes import Code
from ..ledger.commands import Command, Entry, encode_entry


class Unavailable(Exception):
    """Nothing was applied (no leader / no quorum); the request may be retried as is."""


class OutcomeUnknown(Exception):
    """The entry may or may not have been applied; retry with the same ids to find out."""


@dataclass
class _Slot:
    """One entry being replicated; it frees its in-flight slot once, on result or on timeout."""

    released: bool = False


@dataclass
class _Pending:
    commands: list[Command]
    future: asyncio.Future[list[Code]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    slot: _Slot | None = None


class GroupCommitter:
    def __init__(
        self,
        replicator: Replicator,
        max_entry_commands: int = 16380,
        max_inflight: int = 4,
        timeout_s: float = 10.0,
        observe_commit: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        """`observe_commit` hears, per applied entry, the seconds from its proposal to its result."""
        self._raft = replicator
        self._observe_commit = observe_commit
        self._loop = asyncio.get_running_loop()
        self._max_commands = max_entry_commands
        self._max_inflight = max_inflight
        self._timeout = timeout_s
        self._queue: list[_Pending] = []
        self._readers: list[asyncio.Future[None]] = []
        self._reading: list[asyncio.Future[None]] = []  # waiting on the barrier in flight
        self._watching = False
        self._inflight = 0
        self._barrier_inflight = False
        self.entries_proposed = 0

    async def submit(self, commands: list[Command]) -> list[Code]:
        self._check_quorum_known()
        pending = _Pending(list(commands))
        self._queue.append(pending)
        self._flush()
        self._watch()
        try:
            return await self._wait(pending.future)
        except OutcomeUnknown:
            if pending.slot is None:  # timed out before it was handed to Raft: nothing was applied
                self._queue.remove(pending)
                raise Unavailable("timed out waiting for a free replication slot") from None
            # An entry whose index is overwritten after a leader change may not be called back
            # until the log reaches that index again; do not let it hold a slot meanwhile.
            self._release(pending.slot)
            raise

    async def propose(self, entry: Entry) -> list[Code]:
        """Propose a ready-made entry on its own (configuration changes)."""
        future: asyncio.Future[list[Code]] = self._loop.create_future()
        self._raft.propose(encode_entry(entry), self._resolver([(0, future)]))
        return await self._wait(future)

    async def read_barrier(self) -> None:
        """Wait until this node has applied every entry committed before the call.

        A barrier lost to an election is simply tried again (reads are idempotent) until the
        timeout; only then does the caller see `Unavailable`.
        """
        deadline = self._loop.time() + self._timeout
        while True:
            self._check_quorum_known()
            future: asyncio.Future[None] = self._loop.create_future()
            self._readers.append(future)
            self._flush_readers()
            self._watch()
            try:
                await self._wait(future, max(0.0, deadline - self._loop.time()))
                return
            except (Unavailable, OutcomeUnknown):
                if self._loop.time() > deadline:
                    raise Unavailable("no leader with a quorum to confirm the read") from None
                await asyncio.sleep(0.05)

    async def _wait(self, future: asyncio.Future[Any], timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._timeout if timeout is None else timeout)
        except TimeoutError:
            raise OutcomeUnknown("timed out waiting for the cluster") from None
        finally:
            # On a timeout, or when the client went away (aiohttp cancels the handler), nobody waits
            # for it any more: cancelled, a late outcome is dropped instead of being logged as
            # "Future exception was never retrieved" (shield forgets it once its waiter is cancelled).
            future.cancel()

    # -- no leader with a quorum ---------------------------------------------------------------

    def quorum_lost(self) -> bool:
        """No leader with a quorum known for an election timeout: give up on one for now."""
        return time.monotonic() - self._raft.quorum_known_at() >= self._raft.election_timeout_s

    def _check_quorum_known(self) -> None:
        if self.quorum_lost():
            raise Unavailable(f"no leader with a quorum known for {self._raft.election_timeout_s:g} s")

    def _watch(self) -> None:
        """While requests wait, look every few milliseconds whether they can go or must give up."""
        if not self._watching and (self._queue or self._readers or self._reading):
            self._watching = True
            self._loop.call_later(0.02, self._on_watch)

    def _on_watch(self) -> None:
        self._watching = False
        if self._raft.leader_with_quorum_known:
            self._flush()
            self._flush_readers()
        elif self.quorum_lost():
            waiting = [p.future for p in self._queue] + self._readers + self._reading
            self._queue, self._readers, self._reading = [], [], []
            self._barrier_inflight = False  # a late answer to the abandoned barrier releases nobody
            for future in waiting:
                if not future.done():
                    future.set_exception(Unavailable("no leader with a quorum"))
        self._watch()

    # -- writes -----------------------------------------------------------------------------

    def _flush(self) -> None:
        if not self._raft.leader_with_quorum_known:
            return  # held here until one is known, or failed by _on_watch
        while self._queue and self._inflight < self._max_inflight:
            batch: list[_Pending] = []
            count = 0
            while self._queue and (not batch or count + len(self._queue[0].commands) <= self._max_commands):
                item = self._queue.pop(0)
                if item.future.done():
                    continue  # its client went away before it was proposed: nothing to do
                batch.append(item)
                count += len(item.commands)
            if not batch:
                continue
            commands = tuple(c for item in batch for c in item.commands)
            slot = _Slot()
            for item in batch:
                item.slot = slot
            self._inflight += 1
            self.entries_proposed += 1
            slices = [(len(item.commands), item.future) for item in batch]
            entry = Entry(commands=commands, time_ms=time.time_ns() // 1_000_000)
            self._raft.propose(encode_entry(entry), self._resolver(slices, slot))

    def _release(self, slot: _Slot) -> None:
        if not slot.released:
            slot.released = True
            self._inflight -= 1
            self._flush()

    def _resolver(self, slices: list[tuple[int, asyncio.Future[list[Code]]]], slot: _Slot | None = None) -> Any:
        proposed = time.perf_counter()

        def on_raft_thread(result: Any, outcome: Outcome) -> None:
            if outcome == Outcome.APPLIED:
                self._observe_commit(time.perf_counter() - proposed)
            self._loop.call_soon_threadsafe(self._resolve, slices, result, outcome, slot)

        return on_raft_thread

    def _resolve(
        self, slices: list[tuple[int, asyncio.Future[list[Code]]]], result: Any, outcome: Outcome, slot: _Slot | None
    ) -> None:
        start = 0
        for count, future in slices:
            if future.done():
                start += count
                continue
            if outcome == Outcome.APPLIED:
                future.set_result(result[start : start + count] if count else result)
            elif outcome == Outcome.NO_LEADER:
                future.set_exception(Unavailable("no leader with a quorum"))
            else:
                future.set_exception(OutcomeUnknown("leadership changed before the entry committed"))
            start += count
        if slot is not None:
            self._release(slot)

    # -- reads ------------------------------------------------------------------------------

    def _flush_readers(self) -> None:
        if self._barrier_inflight or not self._readers or not self._raft.leader_with_quorum_known:
            return
        readers, self._readers = self._readers, []
        self._reading = readers
        self._barrier_inflight = True

        def on_raft_thread(_result: Any, outcome: Outcome) -> None:
            self._loop.call_soon_threadsafe(self._release_readers, readers, outcome)

        self._raft.barrier(on_raft_thread)

    def _release_readers(self, readers: list[asyncio.Future[None]], outcome: Outcome) -> None:
        if readers is self._reading:
            self._reading = []
            self._barrier_inflight = False
        for future in readers:
            if future.done():
                continue
            if outcome == Outcome.APPLIED:
                future.set_result(None)
            else:
                future.set_exception(Unavailable("no leader with a quorum"))
        self._flush_readers()
