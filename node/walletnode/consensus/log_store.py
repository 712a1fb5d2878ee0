"""The durable Raft log (`DiskLog`): the node's `LogStorage`, one write-ahead file per member.

The file is a header (magic, format version) followed by records framed by `records.py`, each
`1 byte type | msgpack body`: ENTRY (an `Entry`), STATE (a `HardState`, the last one wins) and
SNAPSHOT (a `SnapshotMeta`, which replaces everything before it). Appends are cheap and in place;
a follower's conflict truncation is just an ENTRY whose index is not past the end, so the file
never has to be cut in the middle. `compact` and `install` rewrite the file (SNAPSHOT + STATE +
the entries kept) beside it and rename it over: a crash leaves the old log or the new, never a mix.

Memory holds (term, offset, length) per entry, never entry data: entries are read back with
`os.pread` when the core asks for them, since one entry can be megabytes.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import struct
from enum import IntEnum
from typing import NamedTuple

import msgspec

from . import records
from .durable import fsync_dir, replace_atomically
from .messages import Entry, HardState, SnapshotMeta
from .storage import SlotLog

log = logging.getLogger(__name__)

MAGIC = b"WCRAFTLG"
VERSION = 1
FILE_HEADER = struct.Struct("<8sI")  # magic, format version
FILE_NAME = "raft.log"
TMP_SUFFIX = ".tmp"  # what durable.replace_atomically and our rewrite write before renaming


class RecordType(IntEnum):
    ENTRY = 1
    STATE = 2
    SNAPSHOT = 3


class LogFormatError(Exception):
    """The log file is not one this version can read, or is corrupt beyond a torn tail."""


class _Slot(NamedTuple):
    """Where one entry lives: its msgpack body is `length` bytes at file `offset`."""

    term: int
    offset: int
    length: int


_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(Entry)
_state_decoder = msgspec.msgpack.Decoder(HardState)
_snapshot_decoder = msgspec.msgpack.Decoder(SnapshotMeta)
_BODY_OFFSET = records.HEADER.size + 1  # a record's body starts after its frame header and type byte


def _record(kind: RecordType, body: bytes) -> bytes:
    return records.frame(bytes([kind]) + body)


def _refuse(path: str, found: str) -> LogFormatError:
    return LogFormatError(
        f"{path}: found {found}, but this walletnode reads Raft log format version {VERSION} only. "
        "This data directory was written by another version of walletnode (or is not a walletnode "
        "data directory): run the version that wrote it, or restore this member from a backup or "
        "re-sync it from the other members (empty its data directory and add it back)."
    )


class DiskLog(SlotLog):
    """A `LogStorage` on disk, written by the node in Ready order and made durable by `sync()`."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self._dir = directory
        self._path = os.path.join(directory, FILE_NAME)
        self.snap = SnapshotMeta()
        self.hard_state = HardState()
        self.slots: list[_Slot] = []  # _slots[0] is entry _snap.index + 1
        self._dirty = False
        self._remove_interrupted_rewrite()
        if not os.path.exists(self._path):
            replace_atomically(self._path, FILE_HEADER.pack(MAGIC, VERSION))
        self._fd = os.open(self._path, os.O_RDWR)
        try:
            self._end = self._load()
        except BaseException:
            os.close(self._fd)
            raise

    # -- opening ----------------------------------------------------------------------------

    def _remove_interrupted_rewrite(self) -> None:
        """A temp file is a rewrite that crashed before its rename: the log file is still the old one."""
        tmp = self._path + TMP_SUFFIX
        if os.path.exists(tmp):
            log.warning("%s: removing %s left by an interrupted log rewrite", self._path, tmp)
            os.unlink(tmp)
            fsync_dir(self._dir)

    def _load(self) -> int:
        """Replay the file into memory; cut a torn tail off for good. Returns the end of the last record."""
        size = os.fstat(self._fd).st_size
        self._check_header(size)
        end = FILE_HEADER.size
        if size > end:
            with mmap.mmap(self._fd, size, prot=mmap.PROT_READ) as mapped, memoryview(mapped) as view:
                for record_end, payload in records.scan(view, end):
                    if not payload:  # zeros pass the checksum: a file extended by a crash before its data landed
                        break
                    self._replay(end, payload)
                    end = record_end
        if end < size:
            log.warning(
                "%s: cutting a torn tail of %d bytes at offset %d (a crash mid-write)", self._path, size - end, end
            )
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        return end

    def _check_header(self, size: int) -> None:
        if size < FILE_HEADER.size:
            raise _refuse(self._path, f"a {size}-byte file with no Raft log header")
        magic, version = FILE_HEADER.unpack(os.pread(self._fd, FILE_HEADER.size, 0))
        if magic != MAGIC:
            raise _refuse(self._path, f"no walletnode Raft log header (magic {magic!r}, expected {MAGIC!r})")
        if version != VERSION:
            raise _refuse(self._path, f"Raft log format version {version}")

    def _replay(self, offset: int, payload: bytes) -> None:
        kind, body = payload[0], payload[1:]
        try:
            if kind == RecordType.ENTRY:
                self._replay_entry(offset, _entry_decoder.decode(body), len(body))
            elif kind == RecordType.STATE:
                self.hard_state = _state_decoder.decode(body)
            elif kind == RecordType.SNAPSHOT:
                self.snap, self.slots = _snapshot_decoder.decode(body), []
            else:
                raise self._corrupt(offset, f"unknown record type {kind}")
        except msgspec.DecodeError as e:
            raise self._corrupt(offset, f"undecodable record ({e})") from e

    def _replay_entry(self, offset: int, entry: Entry, length: int) -> None:
        """An ENTRY replaces the log from its index on, as `append` did when it was written."""
        if not self.snap.index < entry.index <= self.last_index() + 1:
            raise self._corrupt(offset, f"entry {entry.index} after entry {self.last_index()}")
        del self.slots[entry.index - self.snap.index - 1 :]
        if entry.term < self.term(entry.index - 1):
            raise self._corrupt(offset, f"entry {entry.index} has term {entry.term}, lower than the entry before it")
        self.slots.append(_Slot(entry.term, offset + _BODY_OFFSET, length))

    def _corrupt(self, offset: int, what: str) -> LogFormatError:
        return LogFormatError(
            f"{self._path} is corrupt at offset {offset}: {what}. Its records checksum correctly, so this "
            "is not a torn write: restore this member from a backup or re-sync it from the other members."
        )

    def _read(self, slot: _Slot) -> Entry:
        entry = _entry_decoder.decode(os.pread(self._fd, slot.length, slot.offset))
        assert entry.term == slot.term, (entry, slot)
        return entry

    # -- writes, by the node ----------------------------------------------------------------

    @property
    def is_new(self) -> bool:
        """True while nothing was ever written: a new directory, or a crash before the first write."""
        return self._end == FILE_HEADER.size

    @property
    def size_bytes(self) -> int:
        return self._end

    def bootstrap(self, snapshot: SnapshotMeta, hard: HardState) -> None:
        """Start a founding member's log; durable on return (it is all the member knows)."""
        assert self.is_new, f"{self._path} already holds a log"
        self._rewrite(snapshot, hard, [])

    def append(self, entries: list[Entry]) -> None:
        """Append, replacing every entry from `entries[0].index` on; durable after `sync()`."""
        if not entries:
            return
        first = entries[0].index
        assert self.snap.index < first <= self.last_index() + 1, (first, self.snap.index, self.last_index())
        previous_term = self.term(first - 1)
        slots: list[_Slot] = []
        blobs: list[bytes] = []
        offset = self._end
        for i, entry in enumerate(entries):
            assert entry.index == first + i, ("indexes must be contiguous", first, entries)
            assert entry.term >= previous_term, ("terms never decrease along the log", entry, previous_term)
            previous_term = entry.term
            body = _encoder.encode(entry)
            slots.append(_Slot(entry.term, offset + _BODY_OFFSET, len(body)))
            blobs.append(_record(RecordType.ENTRY, body))
            offset += len(blobs[-1])
        self._write(b"".join(blobs))
        del self.slots[first - self.snap.index - 1 :]
        self.slots.extend(slots)

    def set_hard_state(self, hard: HardState) -> None:
        """Record term, vote and commit; durable after `sync()`."""
        self._write(_record(RecordType.STATE, _encoder.encode(hard)))
        self.hard_state = hard

    def sync(self) -> None:
        """One fsync for everything written since the last: before any message that depends on it."""
        if self._dirty:
            os.fsync(self._fd)
            self._dirty = False

    def compact(self, snapshot: SnapshotMeta) -> None:
        """Drop entries up to `snapshot.index`, which the state machine already holds durably."""
        assert self.snap.index <= snapshot.index <= self.last_index(), (snapshot, self.snap, self.last_index())
        assert self.term(snapshot.index) == snapshot.term, (snapshot, self.term(snapshot.index))
        self._rewrite(snapshot, self.hard_state, self.slots[snapshot.index - self.snap.index :])

    def install(self, snapshot: SnapshotMeta) -> None:
        """Replace the whole log by a snapshot received from the leader; the hard state stays."""
        self._rewrite(snapshot, self.hard_state, [])

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def _write(self, data: bytes) -> None:
        """Write records at the end. On failure (a full disk) cut the file back to where they started:
        a torn record would hide every record after it on the next open, including acknowledged ones."""
        try:
            if os.pwrite(self._fd, data, self._end) != len(data):
                raise OSError(errno.ENOSPC, "short write to the Raft log", self._path)
        except BaseException:
            os.ftruncate(self._fd, self._end)
            raise
        self._end += len(data)
        self._dirty = True

    def _rewrite(self, snapshot: SnapshotMeta, hard: HardState, kept: list[_Slot]) -> None:
        """Write the log anew as SNAPSHOT + STATE + `kept` entries beside the file and rename it over.

        Entries are copied one at a time, never all in memory. On failure the old file and state stay."""
        tmp = self._path + TMP_SUFFIX
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            end, slots = self._write_new_log(fd, snapshot, hard, kept)
            os.fsync(fd)
            os.replace(tmp, self._path)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(self._fd)
        self._fd, self._end, self.snap, self.hard_state, self.slots = fd, end, snapshot, hard, slots
        self._dirty = False
        fsync_dir(self._dir)  # the rename itself survives power loss

    def _write_new_log(
        self, fd: int, snapshot: SnapshotMeta, hard: HardState, kept: list[_Slot]
    ) -> tuple[int, list[_Slot]]:
        head = FILE_HEADER.pack(MAGIC, VERSION)
        head += _record(RecordType.SNAPSHOT, _encoder.encode(snapshot))
        head += _record(RecordType.STATE, _encoder.encode(hard))
        _write_all(fd, head)
        end = len(head)
        slots: list[_Slot] = []
        for slot in kept:
            record = _record(RecordType.ENTRY, os.pread(self._fd, slot.length, slot.offset))
            _write_all(fd, record)
            slots.append(_Slot(slot.term, end + _BODY_OFFSET, slot.length))
            end += len(record)
        return end, slots


def _write_all(fd: int, data: bytes) -> None:
    if os.write(fd, data) != len(data):
        raise OSError(errno.ENOSPC, "short write while rewriting the Raft log")
