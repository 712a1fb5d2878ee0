"""The Raft journal on disk: what pysyncobj's own journal does not guarantee, we do.

pysyncobj keeps its log in an mmap without fsync and stores term/vote without fsync. This
journal implements the same interface (duck-typed; see `pysyncobj.journal.Journal`) with:

* records framed by length + CRC32C (`records.py`); a torn tail is truncated on open;
* appends that are made durable by `sync()` before anything depends on them: the Raft adapter
  calls it before every outgoing message and before the commit index moves, so no node ever
  acknowledges, votes for or applies an entry that is not on its disk;
* term and vote written atomically and fsync'd before `set_current_term` returns;
* compaction and truncation by rewrite-and-rename, after the snapshot they rely on is durable.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Callable
from typing import Any

import msgspec

from . import records
from .durable import fsync_dir, replace_atomically, write_file_synced

MAGIC = b"WCJRNL01"
ENTRY_HEAD = struct.Struct("<QQ")

RaftEntry = tuple[bytes, int, int]  # (command, index, term), pysyncobj's shape


class _Meta(msgspec.Struct):
    term: int = 0
    voted_for: str | None = None
    commit_index: int = 1


def _encode(entry: RaftEntry) -> bytes:
    command, index, term = entry
    return records.frame(ENTRY_HEAD.pack(index, term) + bytes(command))


def _decode(payload: bytes) -> RaftEntry:
    index, term = ENTRY_HEAD.unpack_from(payload)
    return payload[ENTRY_HEAD.size :], index, term


class DurableJournal:
    """Append-only Raft log with fsync, CRC32C framing and torn-tail recovery."""

    def __init__(
        self,
        directory: str,
        before_discard: Callable[[], None] = lambda: None,
        snapshot_tail: tuple[RaftEntry, RaftEntry] | None = None,
        on_fsync: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        """Open (or create) the journal in `directory`.

        `before_discard` runs before entries are dropped in favour of a snapshot (it must make
        the snapshot durable). `snapshot_tail` is (previous, last) entry of the newest snapshot:
        if a crash hit between writing that snapshot and compacting, compaction is finished here.
        `on_fsync` hears how long each fsync of appended entries took (a slow disk slows every write).
        """
        os.makedirs(directory, exist_ok=True)
        self._dir = directory
        self._path = os.path.join(directory, "raft.journal")
        self._meta_path = os.path.join(directory, "raft.meta")
        self._before_discard = before_discard
        self._on_fsync = on_fsync
        self._entries: list[RaftEntry] = []
        self._offsets: list[int] = []  # file offset where each entry's record starts
        self._bytes = 0
        self._dirty = False
        self._meta = self._load_meta()
        self._meta_dirty = False
        self._fd = self._open_log()
        if snapshot_tail is not None:
            self._finish_interrupted_compaction(snapshot_tail)

    # -- opening ----------------------------------------------------------------------------

    def _load_meta(self) -> _Meta:
        try:
            with open(self._meta_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return _Meta()
        for _, payload in records.scan(data):
            return msgspec.msgpack.decode(payload, type=_Meta)
        raise RuntimeError(f"{self._meta_path} is corrupt; refusing to forget term and vote")

    def _open_log(self) -> int:
        if not os.path.exists(self._path):
            write_file_synced(self._path, MAGIC)
            fsync_dir(self._dir)
        with open(self._path, "rb") as f:
            data = f.read()
        if data[: len(MAGIC)] != MAGIC:
            raise RuntimeError(f"{self._path} is not a walletcluster journal")
        end = len(MAGIC)
        start = end
        for end, payload in records.scan(data, len(MAGIC)):
            self._entries.append(_decode(payload))
            self._offsets.append(start)
            self._bytes += end - start
            start = end
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        if end < len(data):  # torn tail from a crash mid-append: cut it off for good
            os.ftruncate(fd, end)
            os.fsync(fd)
        return fd

    def _finish_interrupted_compaction(self, tail: tuple[RaftEntry, RaftEntry]) -> None:
        previous, last = tail
        if not self._entries or self._entries[0] == previous:
            return
        first = self._entries[0][1]
        pos = previous[1] - first
        if 0 < pos < len(self._entries) - 1 and self._entries[pos] == previous and self._entries[pos + 1] == last:
            self._rewrite(self._entries[pos:])

    # -- the pysyncobj Journal interface ----------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        entry = (command, idx, term)
        record = _encode(entry)
        offset = len(MAGIC) + self._bytes
        try:
            if os.write(self._fd, record) != len(record):  # a full disk can cut a write short
                raise OSError(errno.ENOSPC, "short write to the Raft journal", self._path)
        except BaseException:
            # Leave no torn record: the next open would drop it and every entry appended after it.
            os.ftruncate(self._fd, offset)
            raise
        self._offsets.append(offset)
        self._entries.append(entry)
        self._bytes += len(record)
        self._dirty = True

    def clear(self) -> None:
        self._before_discard()
        self._rewrite([])

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802 - pysyncobj's name
        """Drop entries [entryFrom:] (a follower discarding a conflicting suffix)."""
        if entryFrom >= len(self._entries):
            return
        os.ftruncate(self._fd, self._offsets[entryFrom])
        self._bytes = self._offsets[entryFrom] - len(MAGIC)
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        self._dirty = True

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802 - pysyncobj's name
        """Drop entries [:entryTo] once a snapshot covers them (log compaction)."""
        self._before_discard()
        self._rewrite(self._entries[entryTo:])

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.close()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802,N803
        # Entries become applied (and acknowledged to clients) right after this: sync first.
        self.sync()
        if raftCommitIndex != self._meta.commit_index:
            self._meta.commit_index = raftCommitIndex
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return self._meta.commit_index

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:  # noqa: N802,N803
        self._meta.term = term
        self._meta.voted_for = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:  # noqa: N802
        return self._meta.term

    def getVotedForNodeId(self) -> str | None:  # noqa: N802
        return self._meta.voted_for

    def onOneSecondTimer(self) -> None:  # noqa: N802
        if self._meta_dirty:
            self._store_meta()

    # -- our additions ----------------------------------------------------------------------

    def sync(self) -> None:
        """Make every appended entry durable (fsync) if any is not yet."""
        if self._dirty:
            started = time.perf_counter()
            os.fsync(self._fd)
            self._dirty = False
            self._on_fsync(time.perf_counter() - started)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def _store_meta(self) -> None:
        replace_atomically(self._meta_path, records.frame(msgspec.msgpack.encode(self._meta)))
        self._meta_dirty = False

    def _rewrite(self, entries: list[RaftEntry]) -> None:
        blobs = [_encode(e) for e in entries]
        replace_atomically(self._path, MAGIC + b"".join(blobs))
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._entries = list(entries)
        self._offsets = []
        offset = len(MAGIC)
        for blob in blobs:
            self._offsets.append(offset)
            offset += len(blob)
        self._bytes = offset - len(MAGIC)
        self._dirty = False
