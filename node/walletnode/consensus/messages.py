"""The data the pure Raft core (`core.py`) takes and gives: entries, hard state, messages, Ready.

Everything here is a plain msgspec struct, so the transport can frame it without pickle and the
simulator can copy, drop and reorder it. `WIRE_VERSION` is carried by every frame on the wire.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

NONE = 0  # "no node": node ids start at 1
WIRE_VERSION = 1


class EntryKind(IntEnum):
    NORMAL = 0  # application data (empty for the no-op a new leader appends)
    CONF = 1  # data is an encoded ConfChange


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    index: int
    term: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


class ConfChangeKind(IntEnum):
    ADD_LEARNER = 0  # joins without a vote; the leader promotes it once it has caught up
    PROMOTE = 1
    REMOVE = 2


class ConfChange(msgspec.Struct, frozen=True, array_like=True):
    kind: ConfChangeKind
    node: int
    address: str = ""  # where the node is reached (ADD_LEARNER); opaque to the core


class ConfState(msgspec.Struct, frozen=True, array_like=True):
    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()
    addresses: tuple[tuple[int, str], ...] = ()  # (node, address) of every member, for the transport

    @property
    def members(self) -> frozenset[int]:
        return self.voters | self.learners

    def address(self, node: int) -> str | None:
        return dict(self.addresses).get(node)

    def apply(self, change: ConfChange) -> ConfState:
        node = change.node
        if change.kind == ConfChangeKind.ADD_LEARNER:
            if node in self.members:
                return self  # already a member: adding it again changes nothing
            addresses = (*self.addresses, (node, change.address))
            return ConfState(self.voters, self.learners | {node}, addresses)
        if change.kind == ConfChangeKind.PROMOTE:
            if node not in self.learners:
                return self
            return ConfState(self.voters | {node}, self.learners - {node}, self.addresses)
        addresses = tuple(pair for pair in self.addresses if pair[0] != node)
        return ConfState(self.voters - {node}, self.learners - {node}, addresses)


class HardState(msgspec.Struct, frozen=True, array_like=True):
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


class SnapshotMeta(msgspec.Struct, frozen=True, array_like=True):
    """Describes a snapshot: the state machine after applying `index` (of `term`), with `conf`."""

    index: int = 0
    term: int = 0
    conf: ConfState = ConfState()


class MsgType(IntEnum):
    APPEND = 0
    APPEND_RESP = 1
    VOTE = 2
    VOTE_RESP = 3
    PREVOTE = 4
    PREVOTE_RESP = 5
    HEARTBEAT = 6
    HEARTBEAT_RESP = 7
    SNAPSHOT = 8  # meta only: the adapter streams the data itself
    TIMEOUT_NOW = 9  # leadership transfer: campaign now
    READ_INDEX = 10  # a follower asks the leader for a read index
    READ_INDEX_RESP = 11


class Message(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One Raft message. Fields mean what they mean in etcd-io/raft's Message:
    `index`/`log_term` are the entry before `entries` (APPEND), the candidate's last entry
    (votes) or the acknowledged / rejected index (APPEND_RESP); `hint_*` guide a rejected
    leader to the follower's log; `context` names a read."""

    type: MsgType
    to: int
    frm: int
    term: int
    index: int = 0
    log_term: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None
    transfer: bool = False  # a vote asked for on a leadership transfer: ignore the leader lease


class ReadState(msgspec.Struct, frozen=True):
    """A read named `context` may be served once this node has applied `index`."""

    index: int
    context: bytes


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class Ready(msgspec.Struct):
    """Work for the application, in this order: install `snapshot`, append `entries` (from the
    first one's index on, replacing what was there) and persist `hard_state`, all durably; then
    send `messages`; apply `committed`; serve `reads`; then call `core.advance(ready)`."""

    hard_state: HardState | None = None
    snapshot: SnapshotMeta | None = None
    entries: list[Entry] = msgspec.field(default_factory=list)
    messages: list[Message] = msgspec.field(default_factory=list)
    committed: list[Entry] = msgspec.field(default_factory=list)
    reads: list[ReadState] = msgspec.field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.hard_state or self.snapshot or self.entries or self.messages or self.committed or self.reads)


def entry_size(entry: Entry) -> int:
    return len(entry.data) + 24
