"""The core's view of the log: durable entries in `LogStorage`, plus the ones not yet persisted.

New entries (appended by the leader, or received by a follower) are "unstable" until the
application has persisted them and the core has been told (`stable_to`). A received snapshot is
unstable the same way until installed.
"""

from __future__ import annotations

from .messages import Entry, SnapshotMeta, entry_size
from .storage import Compacted, LogStorage


class RaftLog:
    def __init__(self, storage: LogStorage, committed: int) -> None:
        self.storage = storage
        self.unstable: list[Entry] = []
        self.offset = storage.last_index() + 1  # index of unstable[0]
        self.pending_snapshot: SnapshotMeta | None = None
        first = storage.first_index()
        # A crash between installing a snapshot and persisting the commit index leaves it behind.
        committed = max(committed, first - 1)
        assert committed <= storage.last_index(), (committed, storage.last_index())
        self.committed = committed
        self.applied = first - 1
        self.stable_last = storage.last_index()  # the last entry known to be on disk

    # -- reading ----------------------------------------------------------------------------

    def first_index(self) -> int:
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.unstable[-1].index
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index
        return self.storage.last_index()

    def term(self, index: int) -> int | None:
        """The term of entry `index`, or None when it is compacted away or beyond the end."""
        if index == 0:
            return 0
        if index < self.first_index() - 1 or index > self.last_index():
            return None
        if self.pending_snapshot is not None and index == self.pending_snapshot.index:
            return self.pending_snapshot.term
        if index >= self.offset:
            return self.unstable[index - self.offset].term
        try:
            return self.storage.term(index)
        except Compacted:
            return None

    def last_term(self) -> int:
        term = self.term(self.last_index())
        assert term is not None
        return term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Is a candidate's log at least as up to date as ours (Raft §5.4.1)?"""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    def entries(self, lo: int, max_bytes: int) -> list[Entry] | None:
        """Entries from `lo` to the end, bounded by size (at least one); None if compacted."""
        last = self.last_index()
        if lo > last:
            return []
        if lo < self.first_index():
            return None
        out: list[Entry] = []
        if lo < self.offset:
            try:
                out = self.storage.entries(lo, min(self.offset, last + 1), max_bytes)
            except Compacted:
                return None
            if out[-1].index < min(self.offset, last + 1) - 1:
                return out  # the size bound cut it short
            lo = self.offset
        size = sum(entry_size(e) for e in out)
        for entry in self.unstable[lo - self.offset :]:
            size += entry_size(entry)
            if out and size > max_bytes:
                break
            out.append(entry)
        return out

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last index at or below `index` whose term is at most `term`, and that term: where
        a leader's and a follower's logs may still agree (etcd's fast backtracking)."""
        while index > 0:
            ours = self.term(index)
            if ours is None or ours <= term:
                return index, ours or 0
            index -= 1
        return 0, 0

    # -- changing ---------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Append entries, replacing everything from the first one's index on."""
        if not entries:
            return
        after = entries[0].index
        assert after > self.committed, f"overwriting committed entry {after} (commit {self.committed})"
        if after == self.offset + len(self.unstable):
            self.unstable.extend(entries)
        elif after <= self.offset:
            self.unstable = list(entries)
            self.offset = after
            self.stable_last = min(self.stable_last, after - 1)
        else:
            del self.unstable[after - self.offset :]
            self.unstable.extend(entries)

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first entry that is new or differs in term from ours; 0 if none."""
        for entry in entries:
            if self.term(entry.index) != entry.term:
                return entry.index
        return 0

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: tuple[Entry, ...], check_match: bool = True
    ) -> int | None:
        """A follower's handling of AppendEntries: None if our log does not contain
        (prev_index, prev_term); else the index of the last entry the leader sent, appending only
        from the first conflicting entry on (never dropping entries that match)."""
        if prev_index > self.last_index() or (check_match and not self.match_term(prev_index, prev_term)):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            assert conflict > self.committed, f"conflict at {conflict} with committed entries up to {self.committed}"
            self.append(list(entries[conflict - prev_index - 1 :]))
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            assert index <= self.last_index(), f"commit {index} beyond the log's end {self.last_index()}"
            self.committed = index

    def applied_to(self, index: int) -> None:
        assert self.applied <= index <= self.committed, (self.applied, index, self.committed)
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        """The application has persisted entries up to `index` (of `term`)."""
        if index < self.offset or self.term(index) != term:
            return  # already replaced by later entries; those will be reported in their turn
        del self.unstable[: index + 1 - self.offset]
        self.offset = index + 1
        self.stable_last = max(self.stable_last, index)

    def restore(self, snapshot: SnapshotMeta) -> None:
        self.pending_snapshot = snapshot
        self.unstable = []
        self.offset = snapshot.index + 1
        self.committed = snapshot.index
        self.stable_last = snapshot.index

    def snapshot_installed(self, snapshot: SnapshotMeta) -> None:
        if self.pending_snapshot == snapshot:
            self.pending_snapshot = None
        self.applied = max(self.applied, snapshot.index)

    def next_committed(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet applied, up to a size, that are also on this node's disk."""
        hi = min(self.committed, self.stable_last)
        if self.pending_snapshot is not None or self.applied >= hi:
            return []
        entries = self.entries(self.applied + 1, max_bytes)
        assert entries is not None, "a committed entry was compacted before it was applied"
        return [e for e in entries if e.index <= hi]
