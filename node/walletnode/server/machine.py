"""The ledger as a replicated state machine, kept on disk: applied on the Raft thread, read by the HTTP loop.

Each group of committed entries is one LMDB write transaction that also records the last Raft
index, so the store alone says how far it got: a restart replays only the journal after it, and an
entry at or below it is never applied again. Readers use read transactions: they see whole
groups (never the debit of a transfer without its credit) without waiting for the writer.
Listeners hear of every applied entry after it committed, for the event stream and metrics.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import lmdb
import msgspec

from ..consensus.durable import fsync_dir, fsync_file
from ..ledger.codes import Code
from ..ledger.state import Ledger
from ..ledger.store import StoredEntry
from .lmdb_store import DiskFull, LmdbStore, StoreFile, StoreFormatError, disk_full, raft_index, set_raft_index


class AppliedEntry(msgspec.Struct, frozen=True):
    seq: int
    audit_hash: bytes
    entry: bytes
    results: list[Code]
    apply_seconds: float = 0.0


Listener = Callable[[AppliedEntry], None]
#: Entry bytes per write transaction. Each commit writes every page the transaction dirtied and
#: fsyncs once; a transfer dirties about five pages at random places of the B-trees (its id, two
#: history rows, two accounts), shared by more transfers the larger the transaction: 1 MiB of
#: entries (about 3,000 transfers) costs a third less per transfer than 256 KiB.
TXN_ENTRY_BYTES = 1 << 20
#: LMDB keeps the pages a transaction dirtied in memory of its own, and keeps that memory for later
#: transactions until the environment is closed, so the largest transaction would set the node's
#: anonymous memory for good (one entry may hold 8,190 commands: 75 MiB of dirty pages against a
#: 1M-transfer store). After a transaction of more commands than this, the environment is reopened
#: (about a millisecond; the decoded-entry cache is kept).
RELEASE_AFTER_COMMANDS = 256
RestoreListener = Callable[[int, bytes], None]


class StoreView:
    """One consistent read view of the store, as of Raft index `index` (a snapshot to stream)."""

    def __init__(self, file: StoreFile, txn: lmdb.Transaction) -> None:
        self._file = file
        self._txn = txn
        self.index = raft_index(txn, file.dbs)

    def write_to(self, fd: int) -> None:
        """Write the view, as a compact LMDB file, to `fd`; the leader keeps writing meanwhile."""
        self._file.copy_to(fd, self._txn)


class LedgerMachine:
    def __init__(self, path: str) -> None:
        """`path`: the store file (created if absent)."""
        self.path = path
        self._file = StoreFile(path)
        # Guards the environment's replacement by a received snapshot; the writer needs no lock.
        self._lock = threading.RLock()
        self._views = 0  # snapshot views being streamed (the environment stays open for them)
        self._no_views = threading.Condition(self._lock)
        self._listeners: list[Listener] = []
        self._restore_listeners: list[RestoreListener] = []
        #: Why the last write failed, until one succeeds (a full disk): writes are refused meanwhile.
        self.write_error: str | None = None

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def size_bytes(self) -> int:
        return os.path.getsize(self.path)

    def on_applied(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_restored(self, listener: RestoreListener) -> None:
        self._restore_listeners.append(listener)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Ledger]:
        """The ledger as of one applied group of entries (a read transaction: hold it briefly)."""
        with self._lock, self._file.env.begin() as txn:
            yield Ledger(LmdbStore(self._file, txn))

    def entries(self, after: int, limit: int) -> list[StoredEntry]:
        """Applied entries with seq > `after`, oldest first: the event stream, from genesis."""
        with self.reading() as ledger:
            out = []
            for seq in range(after + 1, after + 1 + limit):
                found = ledger.store.entry(seq)
                if found is None:
                    break
                out.append(found)
            return out

    # -- StateMachine (the Raft disk thread) ------------------------------------------------

    def applied_index(self) -> int:
        return self._file.raft_index()

    def apply(self, entries: Sequence[tuple[int, bytes | None]]) -> list[list[Code] | None]:
        """Apply (Raft index, ledger entry or None) in write transactions of at most
        TXN_ENTRY_BYTES of entries (one entry, however large, is never split), each recording
        the last index it holds. Entries at or below the stored index are skipped (answer None).
        Raises `DiskFull` when the disk refuses: the transactions before it are kept, the failed
        one is not, and the caller applies the same group again."""
        if self.write_error is not None:
            self._reopen()  # LMDB refuses every write after a failed one until it is reopened
        results: list[list[Code] | None] = []
        start = 0
        while start < len(entries):
            end, size = start + 1, len(entries[start][1] or b"")
            while end < len(entries) and size + len(entries[end][1] or b"") <= TXN_ENTRY_BYTES:
                size += len(entries[end][1] or b"")
                end += 1
            results += self._apply_in_one_transaction(entries[start:end])
            start = end
        return results

    def _apply_in_one_transaction(self, entries: Sequence[tuple[int, bytes | None]]) -> list[list[Code] | None]:
        started = time.perf_counter()
        applied: list[AppliedEntry] = []
        results: list[list[Code] | None] = []
        try:
            with self._file.env.begin(write=True) as txn:
                done = raft_index(txn, self._file.dbs)
                store = LmdbStore(self._file, txn)
                ledger = Ledger(store)
                for index, data in entries:
                    if index <= done or data is None:
                        results.append(None)
                        continue
                    codes = ledger.apply_entry_bytes(data)
                    results.append(codes)
                    applied.append(AppliedEntry(ledger.seq, ledger.audit_hash, data, codes))
                store.flush()
                if entries[-1][0] > done:
                    set_raft_index(txn, self._file.dbs, entries[-1][0])
        except lmdb.Error as exc:
            full = disk_full(exc)
            if full is None:
                raise
            self.write_error = str(full)
            raise full from exc
        self.write_error = None
        if sum(len(item.results) for item in applied) > RELEASE_AFTER_COMMANDS:
            self._release_dirty_pages()
        seconds = (time.perf_counter() - started) / max(1, len(applied))
        for item in applied:
            item = msgspec.structs.replace(item, apply_seconds=seconds)
            for listener in self._listeners:
                listener(item)
        return results

    def sync(self) -> None:
        """Everything applied so far on stable storage (before the journal is compacted past it)."""
        self._file.sync()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[StoreView]:
        """A read view to stream to a follower; open while the stream lasts."""
        with self._lock:
            self._views += 1
            file = self._file
        try:
            with file.env.begin() as txn:
                yield StoreView(file, txn)
        finally:
            with self._lock:
                self._views -= 1
                self._no_views.notify_all()

    def _release_dirty_pages(self) -> None:
        """Reopen the environment unless a snapshot is being streamed from it (then later)."""
        with self._lock:
            if self._views == 0:
                self._file.close()
                self._file = StoreFile(self.path, cache=self._file.cache)

    def _reopen(self, replace_with: str | None = None) -> None:
        """Close the environment (once no snapshot is being streamed from it) and open it again,
        after renaming `replace_with` over the store file if given."""
        with self._lock:
            self._no_views.wait_for(lambda: self._views == 0)
            self._file.close()
            if replace_with is not None:
                os.replace(replace_with, self.path)
                fsync_dir(os.path.dirname(os.path.abspath(self.path)))
            self._file = StoreFile(self.path, cache=self._file.cache)

    @staticmethod
    def check_snapshot(path: str) -> int:
        """The Raft index of a received store copy; raises `StoreFormatError` if it is not one."""
        received = StoreFile(path, readonly=True)
        try:
            return received.raft_index()
        finally:
            received.close()

    def install_snapshot(self, path: str) -> int:
        """Make the received copy at `path` this node's store. A crash at any point leaves either
        the old store or the new one whole (the rename is the switch); returns the new index."""
        fsync_file(path)
        self._reopen(replace_with=path)
        with self.reading() as ledger:
            seq, audit_hash = ledger.seq, ledger.audit_hash
        for listener in self._restore_listeners:
            listener(seq, audit_hash)
        return self.applied_index()


__all__ = ["AppliedEntry", "DiskFull", "LedgerMachine", "StoreFormatError", "StoreView"]
