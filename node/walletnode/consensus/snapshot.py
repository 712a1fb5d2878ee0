"""Snapshot files: the ledger state after a Raft index, with that index's term and configuration.

Layout: MAGIC (which carries the format version), then two framed records (`records.py`): the
`SnapshotMeta` and the state. A file is written whole and fsync'd under a temporary name, then
renamed into place, so `ledger.snapshot` is always complete; the same bytes are what a leader
streams to a follower, which checks them with `read` before installing.
"""

from __future__ import annotations

import msgspec

from . import records
from .durable import write_file_synced
from .messages import SnapshotMeta

MAGIC = b"WCSNAP02"
_meta_decoder = msgspec.msgpack.Decoder(SnapshotMeta)


class CorruptSnapshot(Exception):
    pass


def write(path: str, meta: SnapshotMeta, state: bytes) -> None:
    """Write and fsync a snapshot at `path` (the caller renames it into place)."""
    write_file_synced(path, MAGIC + records.frame(msgspec.msgpack.encode(meta)) + records.frame(state))


def parse(data: bytes, where: str) -> tuple[SnapshotMeta, bytes]:
    if data[: len(MAGIC)] != MAGIC:
        found = data[: len(MAGIC)]
        raise CorruptSnapshot(
            f"{where}: not a snapshot of this version (starts {found!r}, expected {MAGIC!r}); "
            "it was written by another version of walletnode: remove the data directory and let "
            "this member catch up from the others, or run the version that wrote it"
        )
    parts = [payload for _, payload in records.scan(data, len(MAGIC))]
    if len(parts) != 2:
        raise CorruptSnapshot(f"{where}: truncated or corrupt")
    return _meta_decoder.decode(parts[0]), parts[1]


def read(path: str) -> tuple[SnapshotMeta, bytes]:
    with open(path, "rb") as f:
        return parse(f.read(), path)
