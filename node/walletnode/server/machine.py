"""The ledger as a replicated state machine, kept on disk: applied on the Raft thread, read by the HTTP loop.

Committed entries are applied into one open LMDB write transaction, the unit, and `publish`
commits it together with the last Raft index, so the store alone says how far it got: a restart
replays only the journal after it (whatever was applied but not published included), and an entry
at or below it is never applied again. Readers use read transactions: they see whole published
units (never the debit of a transfer without its credit) without waiting for the writer.
Listeners hear of every applied entry once it is published, for the event stream and metrics.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import lmdb
import msgspec

from ..consensus.durable import fsync_dir, fsync_file
from ..ledger.codes import Code
from ..ledger.commands import decode_entry
from ..ledger.state import Ledger
from ..ledger.store import StoredEntry
from .lmdb_store import (
    FORMAT,
    DiskFull,
    LmdbStore,
    StoreFile,
    StoreFormatError,
    WriterRows,
    disk_full,
    raft_index,
    set_raft_index,
)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None under another C library."""
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


class AppliedEntry(msgspec.Struct, frozen=True):
    seq: int
    audit_hash: bytes
    entry: bytes
    results: list[Code]
    apply_seconds: float = 0.0


Listener = Callable[[AppliedEntry], None]
#: Entry bytes per write transaction. Each commit writes every page the transaction dirtied and
#: fsyncs once; a transfer dirties its two accounts' pages (shared by more transfers the larger
#: the transaction) and the last pages of the tables that grow at their end.
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
        self.file = file
        self.txn = txn
        self.index = raft_index(txn, file.dbs)

    def write_to(self, fd: int) -> None:
        """Write the view, as a compact LMDB file, to `fd`; the leader keeps writing meanwhile."""
        self.file.copy_to(fd, self.txn)

    # What a base backup needs besides the bytes (backup.archive.BaseSource).
    store_format = FORMAT.decode()

    @functools.cached_property
    def _head(self) -> tuple[int, bytes, int]:
        store = LmdbStore(self.file, self.txn)
        seq, audit_hash = store.head()
        stored = store.entry(seq) if seq else None
        return seq, audit_hash, decode_entry(stored.data).time_ms if stored is not None else 0

    @property
    def seq(self) -> int:
        return self._head[0]

    @property
    def audit_hash(self) -> bytes:
        return self._head[1]

    @property
    def entry_time_ms(self) -> int:
        return self._head[2]

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The view as a compact LMDB file, read from a pipe that `write_to` fills on a thread of
        its own: the copy is never on disk, and the node keeps writing meanwhile."""
        read_end, write_end = os.pipe()
        failure: list[BaseException] = []

        def copy() -> None:
            try:
                self.write_to(write_end)
            except BaseException as exc:  # re-raised by the reader
                failure.append(exc)
            finally:
                os.close(write_end)

        writer = threading.Thread(target=copy, name="store-copy", daemon=True)
        writer.start()
        try:
            with os.fdopen(read_end, "rb", buffering=0) as pipe:
                while chunk := pipe.read(size):
                    yield chunk
        finally:
            writer.join()
        if failure:
            raise failure[0]


class LedgerMachine:
    def __init__(self, path: str, writer_rows: int = 16_384) -> None:
        """`path`: the store file (created if absent); `writer_rows`: how many decoded account rows
        the writer keeps between transactions (~540 bytes each: see WriterRows)."""
        self.path = path
        self._file = StoreFile(path)
        self._rows = WriterRows(writer_rows)  # right only while every unit commits: see _abort_txn
        # Guards the environment's replacement by a received snapshot; the writer needs no lock.
        self._lock = threading.RLock()
        self._views = 0  # snapshot views being streamed (the environment stays open for them)
        self._no_views = threading.Condition(self._lock)
        self._listeners: list[Listener] = []
        self._restore_listeners: list[RestoreListener] = []
        #: Why the last write failed, until one succeeds (a full disk): writes are refused meanwhile.
        self.write_error: str | None = None
        # The unit: the write transaction entries are applied into until `publish` commits it.
        self._unit: tuple[lmdb.Transaction, Ledger] | None = None
        self._unit_done = self._unit_last = 0  # the store's index when it began; the last index applied
        self._unit_entries: list[tuple[int, bytes | None]] = []  # applied into it (again after a failure)
        self._unit_bytes = 0
        self._unit_applied: list[tuple[int, bytes, bytes, list[Code]]] = []  # (seq, audit hash, data, results)
        self._unit_published: list[AppliedEntry] = []  # for the listeners, once committed
        self._unit_announced = 0

    def close(self) -> None:
        """Close the store; a unit not published is dropped (the Raft journal holds its entries)."""
        with self._lock:
            self._close_unit(abort=True)
            self._file.close()

    def domain(self) -> str | None:
        """The cluster id a restored ledger must be served as (None: not a restored ledger)."""
        return self._file.domain()

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
        """The index of the last published entry: what the store holds."""
        return self._file.raft_index()

    def apply(self, entries: Sequence[tuple[int, bytes | None]]) -> list[list[Code] | None]:
        """Apply and publish (Raft index, ledger entry or None), in units of at most
        TXN_ENTRY_BYTES of entries (one entry, however large, is never split). Raises `DiskFull`
        when the disk refuses: the units before it are kept, the failed one is not, and the caller
        applies the same entries again."""
        results: list[list[Code] | None] = []
        start = 0
        while start < len(entries):
            end, size = start + 1, len(entries[start][1] or b"")
            while end < len(entries) and size + len(entries[end][1] or b"") <= TXN_ENTRY_BYTES:
                size += len(entries[end][1] or b"")
                end += 1
            chunk = entries[start:end]
            results += self.apply_unpublished(chunk)
            try:
                self.publish()
            except DiskFull:
                del self._unit_entries[-len(chunk) :]  # the caller applies them again
                raise
            start = end
        return results

    def apply_unpublished(self, entries: Sequence[tuple[int, bytes | None]]) -> list[list[Code] | None]:
        """Apply (Raft index, ledger entry or None) into the open write transaction (the unit),
        which `publish` commits: until then readers do not see them and a crash loses them (the
        Raft journal holds them). Entries at or below the last one applied are skipped (answer
        None). Raises `DiskFull` when the disk refuses: nothing of `entries` was kept, the unit
        before them is rebuilt by the next call, and the caller applies the same entries again."""
        started = time.perf_counter()
        try:
            ledger = self._open_unit()
            results = self._apply_into(ledger, entries)
        except Exception as exc:
            raise self._failed(exc) from exc
        seconds = (time.perf_counter() - started) / max(1, len(entries))
        self._unit_entries += entries
        self._unit_bytes += sum(len(data or b"") for _, data in entries)
        for i, (seq, audit_hash, data, codes) in enumerate(self._unit_applied):
            if i >= self._unit_announced:
                self._unit_published.append(AppliedEntry(seq, audit_hash, data, codes, seconds))
        self._unit_announced = len(self._unit_applied)
        return results

    def unpublished_bytes(self) -> int:
        return self._unit_bytes

    def publish(self) -> int:
        """Commit the unit (one fsync): its entries become visible to readers, survive a crash of
        the process, and (once the next commit or `sync` flushed the meta page) of the machine.
        Returns the store's index. Raises `DiskFull` when the disk refuses; the unit is then
        rebuilt and committed by the next call."""
        if not self._unit_entries:
            return self._file.raft_index() if self._unit is None else self._unit_last
        try:
            ledger = self._open_unit()
            store = ledger.store
            assert isinstance(store, LmdbStore)
            store.flush()
            if self._unit_last > self._unit_done:
                set_raft_index(self._unit_txn(), self._file.dbs, self._unit_last)
            self._unit_txn().commit()
        except Exception as exc:
            raise self._failed(exc) from exc
        self._rows.committed()
        index, published = max(self._unit_last, self._unit_done), self._unit_published
        commands = sum(len(item.results) for item in published)
        self._close_unit()
        self.write_error = None
        if commands > RELEASE_AFTER_COMMANDS:
            self._release_dirty_pages()
        for item in published:
            for listener in self._listeners:
                listener(item)
        return index

    def _open_unit(self) -> Ledger:
        """The unit's ledger, beginning the transaction (and re-applying the entries of a unit
        whose commit failed) if none is open."""
        if self._unit is not None:
            return self._unit[1]
        if self.write_error is not None:
            self._reopen()  # LMDB refuses every write after a failed one until it is reopened
        txn = self._file.env.begin(write=True)
        ledger = Ledger(LmdbStore(self._file, txn, self._rows))
        self._unit = (txn, ledger)
        self._unit_done = self._unit_last = raft_index(txn, self._file.dbs)
        self._unit_applied, self._unit_published, self._unit_announced = [], [], 0
        again = self._unit_entries
        self._unit_entries, self._unit_bytes = [], 0
        if again:
            self._apply_into(ledger, again)
            self._unit_entries, self._unit_bytes = again, sum(len(data or b"") for _, data in again)
            self._unit_published = [AppliedEntry(*item) for item in self._unit_applied]
            self._unit_announced = len(self._unit_applied)
        return ledger

    def _apply_into(self, ledger: Ledger, entries: Sequence[tuple[int, bytes | None]]) -> list[list[Code] | None]:
        results: list[list[Code] | None] = []
        for index, data in entries:
            if index <= self._unit_last or data is None:
                results.append(None)
                self._unit_last = max(self._unit_last, index)
                continue
            codes = ledger.apply_entry_bytes(data)
            results.append(codes)
            self._unit_applied.append((ledger.seq, ledger.audit_hash, data, codes))
            self._unit_last = index
        return results

    def _unit_txn(self) -> lmdb.Transaction:
        assert self._unit is not None
        return self._unit[0]

    def _close_unit(self, abort: bool = False) -> None:
        if abort:
            self._abort_txn()
        self._unit = None
        self._unit_entries, self._unit_bytes = [], 0
        self._unit_applied, self._unit_published, self._unit_announced = [], [], 0

    def _abort_txn(self) -> None:
        """Abort the unit's transaction, and forget the writer's rows: it changed them in place."""
        if self._unit is not None:
            self._unit[0].abort()
            self._unit = None
        self._rows.clear()

    def _failed(self, exc: Exception) -> Exception:
        """Abort the unit after a failed write (its entries are kept, to be applied again) and
        say why: `DiskFull`, or the error itself."""
        self._abort_txn()
        # The published entries of the unit are announced by the commit that succeeds.
        self._unit_applied, self._unit_published, self._unit_announced = [], [], 0
        full = disk_full(exc) if isinstance(exc, lmdb.Error) else None
        if full is None:
            return exc
        self.write_error = str(full)
        return full

    def sync(self) -> None:
        """Everything applied so far published and on stable storage (before the journal is
        compacted past it)."""
        self.publish()
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
        """Reopen the environment unless a snapshot is being streamed from it (then later), and
        hand the freed memory back to the system (glibc keeps freed heap memory otherwise)."""
        with self._lock:
            if self._views == 0:
                self._file.close()
                self._file = StoreFile(self.path, cache=self._file.cache)
                trim = _malloc_trim()
                if trim is not None:
                    trim(0)

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
        self._close_unit(abort=True)  # entries before the received state's index: it holds them
        self._reopen(replace_with=path)
        with self.reading() as ledger:
            seq, audit_hash = ledger.seq, ledger.audit_hash
        for listener in self._restore_listeners:
            listener(seq, audit_hash)
        return self.applied_index()


__all__ = ["AppliedEntry", "DiskFull", "LedgerMachine", "StoreFormatError", "StoreView"]
