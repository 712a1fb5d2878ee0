"""Snapshot files: the ledger state plus the Raft position it corresponds to.

Layout: MAGIC, then two framed records (`records.py`): a small header (last and previous Raft
entry covered, cluster members) and the ledger state. The header alone is cheap to read, which
the journal needs at start-up to finish a compaction that a crash interrupted.
"""

from __future__ import annotations

import os

import msgspec

from . import records
from .durable import write_file_synced
from .journal import RaftEntry

MAGIC = b"WCSNAP01"


class Header(msgspec.Struct, array_like=True):
    last: tuple[bytes, int, int]
    previous: tuple[bytes, int, int]
    members: list[str]


class CorruptSnapshot(Exception):
    pass


def write(path: str, header: Header, state: bytes) -> None:
    """Write and fsync a snapshot at `path` (the caller renames it into place)."""
    data = MAGIC + records.frame(msgspec.msgpack.encode(header)) + records.frame(state)
    write_file_synced(path, data)


def read(path: str) -> tuple[Header, bytes]:
    with open(path, "rb") as f:
        data = f.read()
    if data[: len(MAGIC)] != MAGIC:
        raise CorruptSnapshot(f"{path}: not a walletcluster snapshot")
    parts = [payload for _, payload in records.scan(data, len(MAGIC))]
    if len(parts) != 2:
        raise CorruptSnapshot(f"{path}: truncated or corrupt")
    return msgspec.msgpack.decode(parts[0], type=Header), parts[1]


def read_tail(path: str) -> tuple[RaftEntry, RaftEntry] | None:
    """(previous, last) entry covered by the snapshot at `path`, or None if there is none."""
    if not os.path.exists(path):
        return None
    header, _ = read(path)
    return header.previous, header.last
