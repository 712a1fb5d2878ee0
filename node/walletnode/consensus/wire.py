"""What crosses a peer connection: versioned, typed frames, encoded with msgpack (never pickle).

A frame's plaintext is `version (1) | kind (1) | msgpack body`; the transport seals it with the
cluster key and prefixes its length. A frame of another version is refused, never misread.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import msgspec

from .messages import WIRE_VERSION, Message


class WireVersionError(Exception):
    """The peer speaks another version of the peer protocol."""


class Kind(IntEnum):
    HELLO = 0  # first frame on a connection: who is calling
    RAFT = 1  # a Raft message
    FORWARD = 2  # a follower hands the leader a proposal
    FORWARDED = 3  # the leader's answer: the index and term the proposal got (index 0: refused)
    SNAPSHOT_CHUNK = 4  # bytes of a snapshot file, in order
    SNAPSHOT_DONE = 5  # the snapshot file is complete; carries the SNAPSHOT message


class Hello(msgspec.Struct, frozen=True, array_like=True):
    node: int
    cluster: str


class ForwardKind(IntEnum):
    ENTRY = 0  # data: the entry
    CONF_CHANGE = 1  # data: an encoded ConfChange
    TRANSFER = 2  # data: the target node id, 8 bytes big-endian (0: the best one)


class Forward(msgspec.Struct, frozen=True, array_like=True):
    id: int
    kind: ForwardKind
    data: bytes


class Forwarded(msgspec.Struct, frozen=True, array_like=True):
    id: int
    index: int
    term: int


class SnapshotChunk(msgspec.Struct, frozen=True, array_like=True):
    offset: int
    data: bytes


class SnapshotDone(msgspec.Struct, frozen=True, array_like=True):
    message: Message
    size: int


BODIES: dict[Kind, type[Any]] = {
    Kind.HELLO: Hello,
    Kind.RAFT: Message,
    Kind.FORWARD: Forward,
    Kind.FORWARDED: Forwarded,
    Kind.SNAPSHOT_CHUNK: SnapshotChunk,
    Kind.SNAPSHOT_DONE: SnapshotDone,
}
_decoders = {kind: msgspec.msgpack.Decoder(body) for kind, body in BODIES.items()}
_encoder = msgspec.msgpack.Encoder()


def encode(kind: Kind, body: Any) -> bytes:
    assert isinstance(body, BODIES[kind]), (kind, type(body))
    return bytes((WIRE_VERSION, kind)) + _encoder.encode(body)


def decode(payload: bytes) -> tuple[Kind, Any]:
    if len(payload) < 2:
        raise msgspec.DecodeError("peer frame too short")
    if payload[0] != WIRE_VERSION:
        raise WireVersionError(f"peer protocol version {payload[0]}; this node speaks version {WIRE_VERSION}")
    try:
        kind = Kind(payload[1])
    except ValueError:
        raise msgspec.DecodeError(f"unknown peer frame kind {payload[1]}") from None
    return kind, _decoders[kind].decode(payload[2:])
