"""What the Raft core reads of the durable log, and an in-memory implementation of it.

The core never writes storage: the application persists what a `Ready` hands it and then calls
`advance`. `MemoryStorage` is the reference (the simulator's disk is built on it); the node's
journal implements the same `LogStorage` protocol.
"""

from __future__ import annotations

from typing import Any, Protocol

from .messages import ConfState, Entry, HardState, SnapshotMeta, entry_size


def bootstrap(voters: frozenset[int]) -> tuple[SnapshotMeta, HardState]:
    """Where every founding member of a new cluster starts: a snapshot at index 1 that holds the
    initial configuration. A member that joins later starts empty, so the leader must send it a
    snapshot first, and it learns the configuration from that (not from a log that lacks it)."""
    return SnapshotMeta(1, 1, ConfState(voters=voters)), HardState(term=1, commit=1)


class Compacted(Exception):
    """The entry asked for was compacted into the snapshot."""


class LogStorage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def first_index(self) -> int:
        """Index of the first entry held (the snapshot's index + 1)."""
        ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int:
        """Term of entry `index`, for first_index() - 1 <= index <= last_index(); raises Compacted below."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), at least one, then only while their size stays under max_bytes."""
        ...

    def snapshot(self) -> SnapshotMeta:
        """The newest snapshot a follower can be sent."""
        ...


class SlotLog:
    """The reading half of a log: a snapshot, then one slot per entry (anything with a `term`)
    that `_read` turns into the entry. MemoryStorage's slots are the entries; a log on disk keeps
    where each entry is instead."""

    snap: SnapshotMeta
    hard_state: HardState
    slots: list[Any]

    def _read(self, slot: Any) -> Entry:
        raise NotImplementedError

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self.snap.conf

    def first_index(self) -> int:
        return self.snap.index + 1

    def last_index(self) -> int:
        return self.snap.index + len(self.slots)

    def term(self, index: int) -> int:
        if index < self.snap.index:
            raise Compacted(index)
        if index == self.snap.index:
            return self.snap.term
        term: int = self.slots[index - self.snap.index - 1].term
        return term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        if lo <= self.snap.index:
            raise Compacted(lo)
        assert hi <= self.last_index() + 1, (lo, hi, self.last_index())
        out: list[Entry] = []
        size = 0
        for slot in self.slots[lo - self.snap.index - 1 : hi - self.snap.index - 1]:
            entry = self._read(slot)
            size += entry_size(entry)
            if out and size > max_bytes:
                break
            out.append(entry)
        return out

    def snapshot(self) -> SnapshotMeta:
        return self.snap


class MemoryStorage(SlotLog):
    """A `LogStorage` in a list: the reference for the core's tests and the simulator."""

    def __init__(self, snapshot: SnapshotMeta = SnapshotMeta(), hard_state: HardState = HardState()) -> None:
        self.hard_state = hard_state
        self.snap = snapshot
        self.slots: list[Entry] = []  # slots[0] has index snap.index + 1

    def _read(self, slot: Entry) -> Entry:
        return slot

    # -- writes, by the application ---------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Append, replacing every entry from the first new one's index on."""
        if not entries:
            return
        first = entries[0].index
        assert self.snap.index < first <= self.last_index() + 1, (first, self.snap.index, self.last_index())
        del self.slots[first - self.snap.index - 1 :]
        self.slots.extend(entries)

    def compact(self, snapshot: SnapshotMeta) -> None:
        """Drop the entries up to `snapshot.index`, which the state machine holds durably."""
        assert self.snap.index <= snapshot.index <= self.last_index()
        assert self.term(snapshot.index) == snapshot.term
        del self.slots[: snapshot.index - self.snap.index]
        self.snap = snapshot

    def install(self, snapshot: SnapshotMeta) -> None:
        """Replace the whole log with a received snapshot."""
        self.slots = []
        self.snap = snapshot
