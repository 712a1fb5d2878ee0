"""Framing shared by the journal and snapshot files: length + CRC32C per record.

A record is `u32 length | u32 crc32c(payload) | payload` (little endian). Reading stops at the
first record that is short or fails its checksum: that is a torn write from a crash, and
everything from there on is discarded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import crc32c

HEADER = struct.Struct("<II")
MAX_RECORD = 1 << 30


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload


def scan(data: bytes | memoryview, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """Yield (end offset, payload) of each intact record from `offset` until the first torn one."""
    view = memoryview(data)
    while offset + HEADER.size <= len(view):
        length, checksum = HEADER.unpack_from(view, offset)
        start = offset + HEADER.size
        end = start + length
        if length > MAX_RECORD or end > len(view):
            return
        payload = bytes(view[start:end])
        if crc32c.crc32c(payload) != checksum:
            return
        offset = end
        yield offset, payload
