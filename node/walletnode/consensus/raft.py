"""The pysyncobj adapter: the only module that imports the Raft engine.

`RaftReplicator` runs a pysyncobj node whose journal is `DurableJournal` and whose snapshots are
`snapshot.py` files, whose peer connections are encrypted and authenticated with the cluster
secret (pysyncobj messages are pickles: an unauthenticated peer port would be remote code
execution), and which hands every committed entry to a `StateMachine`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import pysyncobj.syncobj as _syncobj_module
import pysyncobj.tcp_connection as _tcp_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.monotonic import monotonic
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _RAFT_STATE
from pysyncobj.transport import TCPTransport

from . import snapshot
from .durable import fsync_dir, fsync_file
from .journal import DurableJournal
from .peer_cipher import PeerCipher
from .pre_vote import PreVote

log = logging.getLogger(__name__)

_ROLES = {_RAFT_STATE.FOLLOWER: "follower", _RAFT_STATE.CANDIDATE: "candidate", _RAFT_STATE.LEADER: "leader"}

Callback = Callable[[Any, "Outcome"], None]


class Outcome(StrEnum):
    """How a proposal ended, in terms the HTTP layer can act on."""

    APPLIED = "applied"
    NO_LEADER = "no_leader"  # not appended anywhere: safe to retry
    UNKNOWN = "unknown"  # may or may not have been applied: retry with the same ids


def _outcome(error: int) -> Outcome:
    if error == FAIL_REASON.SUCCESS:
        return Outcome.APPLIED
    if error in (FAIL_REASON.QUEUE_FULL, FAIL_REASON.MISSING_LEADER, FAIL_REASON.REQUEST_DENIED):
        return Outcome.NO_LEADER
    return Outcome.UNKNOWN


class StateMachine(Protocol):
    """What the replicated state must offer the engine. Called only from the Raft thread."""

    def apply(self, entry: bytes) -> Any: ...
    def dump(self) -> bytes: ...
    def restore(self, state: bytes) -> None: ...


@dataclass(frozen=True)
class RaftSettings:
    heartbeat_s: float = 0.1
    election_min_s: float = 0.5
    election_max_s: float = 1.0
    compact_entries: int = 2000
    compact_seconds: int = 60
    compact_bytes: int = 256 << 20


# pysyncobj builds its journal from `conf.journalFile` through this module-level factory; let it
# accept a ready journal object so ours (durable) is used without forking the library.
_original_create_journal = _syncobj_module.createJournal


def _create_journal(journal_file: Any) -> Any:
    if isinstance(journal_file, DurableJournal):
        return journal_file
    return _original_create_journal(journal_file)


_syncobj_module.createJournal = _create_journal
# Peer messages are sealed with AES-GCM instead of pysyncobj's Fernet (see peer_cipher.py).
_syncobj_module.getEncryptor = PeerCipher


class _StoredZlib:
    """pysyncobj deflates every peer message at level 3: ~9 µs per transfer per follower on the leader,
    its largest cost after signatures, to save bandwidth a cluster network does not lack. Level 0
    writes the same zlib format (stored blocks), so nodes with and without this still interoperate."""

    @staticmethod
    def compress(data: bytes, _level: int = -1) -> bytes:
        return zlib.compress(data, 0)

    decompress = staticmethod(zlib.decompress)


_tcp_module.zlib = _StoredZlib  # type: ignore[assignment]

# Bytes a connection reads before it handles the messages in them, and bytes of entries or
# snapshot a leader lets wait unsent for one follower before it holds back more.
READ_AHEAD_BYTES = 4 << 20
PEER_WINDOW_BYTES = 8 << 20


def _read_some(connection: Any) -> None:
    """pysyncobj reads a socket until it is empty before it parses anything. A sender faster than
    this node (a leader streaming a snapshot) then grew one buffer without end, copied on every
    recv, while no message was handled and the election timer ran out. Read READ_AHEAD_BYTES per
    poll, or up to the end of a longer first message; the poller reports the rest next round."""
    while len(connection._TcpConnection__readBuffer) < _wanted(connection._TcpConnection__readBuffer):
        if not connection._TcpConnection__processRead():
            break
    connection._TcpConnection__lastReadTime = monotonic()


def _wanted(buffer: bytes) -> int:
    if len(buffer) < 4:
        return READ_AHEAD_BYTES
    return max(READ_AHEAD_BYTES, 4 + struct.unpack_from("i", buffer)[0])  # pysyncobj's framing


_tcp_module.TcpConnection._TcpConnection__tryReadBuffer = _read_some  # type: ignore[attr-defined]


class _SyncingTransport(TCPTransport):
    """Make the journal durable before any message leaves: acks and votes imply fsync'd state.

    Also flow control, which pysyncobj lacks: it queues everything a lagging follower misses in
    one go (a 1,000-entry backlog of 3 MB mint batches is 3 GB), appending to one bytes buffer,
    which copies the buffer each time, while heartbeats wait behind it: the follower heard nothing,
    called election after election (term 586 in one benchmark run) and never caught up. Entries
    for a follower with PEER_WINDOW_BYTES already unsent are held back: not sent, and the engine
    rewinds that follower's next index to the first of them after the round (`take_held_back`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._peer_errors: dict[str, str] = {}
        super().__init__(*args, **kwargs)
        self._held_back: dict[Any, int] = {}

    def send(self, node: Any, message: Any) -> bool:
        entries = message.get("entries")
        if entries and self.unsent_bytes(node) >= PEER_WINDOW_BYTES:
            self._held_back.setdefault(node, entries[0][1])
            return True
        self._syncObj.sync_journal()
        return bool(super().send(node, message))

    def _onTick(self) -> None:  # noqa: N802 - pysyncobj's name
        """pysyncobj checks a connection's timeout only when its socket reports an event, and a
        connect to an address that drops packets (a replaced pod's old IP, a partition) reports
        none until the kernel gives up on the SYN, a minute or more later: a restarted member heard
        no leader for 70 s in the operator's rolling upgrade. Pending connects time out here, after
        connectionTimeout, and are tried again with a fresh DNS lookup."""
        for connection in list(self._connections.values()):
            if connection.state == _tcp_module.CONNECTION_STATE.CONNECTING:
                connection._TcpConnection__processConnectionTimeout()
        super()._onTick()

    def _connectIfNecessarySingle(self, node: Any) -> bool:  # noqa: N802 - pysyncobj's name
        """pysyncobj retries a peer it cannot reach without a word of why; note it (peer_errors)."""
        last = self._lastConnectAttempt.get(node)
        started = bool(super()._connectIfNecessarySingle(node))
        if self._lastConnectAttempt.get(node) != last:  # an attempt was made just now
            ip = globalDnsResolver().resolve(node.host)  # cached by that attempt
            if ip is None:
                self._set_peer_error(node.id, f"cannot resolve {node.host}")
            elif not started or last is not None:  # a retry: the previous attempt did not last
                self._set_peer_error(node.id, f"cannot connect to {node.host} ({ip}:{node.port})")
        return started

    def _onNodeConnected(self, node: Any) -> None:  # noqa: N802 - pysyncobj's name
        self._set_peer_error(node.id, None)
        super()._onNodeConnected(node)

    def _set_peer_error(self, address: str, error: str | None) -> None:
        # Replaced, never changed in place: the HTTP thread reads it while the Raft thread writes.
        errors = {a: e for a, e in self._peer_errors.items() if a != address}
        if error is not None:
            errors[address] = error
        self._peer_errors = errors

    def peer_errors(self) -> dict[str, str]:
        """Per peer address this node fails to dial, why (unresolvable name, no answer)."""
        return self._peer_errors

    def take_held_back(self) -> dict[Any, int]:
        """Per follower, the first entry index that was held back since the last call."""
        held, self._held_back = self._held_back, {}
        return held

    def unsent_bytes(self, node: Any) -> int:
        connection = self._connections.get(node)
        return connection.getSendBufferSize() if connection is not None else 0


def trim_append_entries(message: dict[str, Any], journal: Any) -> dict[str, Any]:
    """Drop the entries of an AppendEntries that this follower already holds.

    pysyncobj deletes everything after prevLogIdx before appending, even entries identical to the
    ones arriving. After a retransmission that throws away entries this node has acknowledged
    (a crash before the re-append is fsync'd would then lose a committed entry). Raft truncates
    only from the first conflicting entry; this rewrites the message so pysyncobj does just that.
    """
    entries = message["entries"]
    if not entries or not len(journal):
        return message
    first = journal[0][1]
    last_index, last_term = journal[-1][1], journal[-1][2]

    def term_at(index: int) -> int | None:
        return journal[index - first][2] if first <= index <= last_index else None

    matching = 0
    while matching < len(entries) and term_at(entries[matching][1]) == entries[matching][2]:
        matching += 1
    if matching == 0:
        return message
    if matching < len(entries) or last_index == entries[-1][1]:
        kept = entries[matching - 1]
        return {**message, "prevLogIdx": kept[1], "prevLogTerm": kept[2], "entries": entries[matching:]}
    if last_term == message["term"]:
        # Everything sent is here and our tail is from this leader's term, hence from this leader:
        # by the Log Matching property our whole log agrees with it. Acknowledge all of it.
        return {**message, "prevLogIdx": last_index, "prevLogTerm": last_term, "entries": []}
    return message


_PR_SET_PDEATHSIG = 1  # prctl(2)

# Snapshot bytes a leader sends per chunk.
SNAPSHOT_CHUNK_BYTES = 1 << 20


class _Engine(PreVote, SyncObj):
    def __init__(
        self,
        self_address: str,
        peers: list[str],
        conf: SyncObjConf,
        journal: DurableJournal,
        machine: StateMachine,
    ) -> None:
        self._journal = journal
        self._machine = machine
        super().__init__(self_address, peers, conf, transportClass=_SyncingTransport)
        # pysyncobj sends a whole snapshot to a lagging follower in one go: with 1M accounts
        # (540 MB) the Raft thread encrypted for seconds, heartbeats stopped, and hundreds of MB
        # queued in the connection, which both ends copy once per message (bytes slicing): the
        # follower then spent seconds in one read and the leader timed the connection out and
        # restarted the transfer. A chunk is handed out only while less than
        # PEER_WINDOW_BYTES wait unsent for that follower; otherwise a heartbeat goes, and
        # the transfer resumes where it stopped on the next round of append_entries.
        serializer = self._SyncObj__serializer
        whole = serializer.getTransmissionData
        transport = self._SyncObj__transport

        def windowed(node: Any) -> Any:
            if transport.unsent_bytes(node) >= PEER_WINDOW_BYTES:
                return None  # sent as an empty append_entries: a heartbeat
            return whole(node)

        serializer.getTransmissionData = windowed
        # With a serializer hook pysyncobj writes snapshots on the Raft thread: at 1M accounts
        # (encode + write + fsync of 540 MB, seconds) the leader went silent and was deposed.
        # Its fork path works with the hook too: a child process writes the state as it is at
        # the fork (the Raft thread, the only writer, is the one forking) while the parent goes
        # on; the parent learns of success by waitpid and only then compacts the journal.
        if hasattr(os, "fork"):
            serializer._Serializer__useFork = True

    def sync_journal(self) -> None:
        self._journal.sync()

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802,N803 - pysyncobj's names
        self._pre_vote_before_tick()
        SyncObj._onTick(self, timeToWait)  # type: ignore[attr-defined]

    def _SyncObj__sendAppendEntries(self) -> None:  # noqa: N802 - see _SyncObj__onMessageReceived
        SyncObj._SyncObj__sendAppendEntries(self)  # type: ignore[attr-defined]
        next_index = self._SyncObj__raftNextIndex
        for node, first in self._SyncObj__transport.take_held_back().items():
            if next_index.get(node, first) > first:
                next_index[node] = first

    # pysyncobj registers `self.__onMessageReceived` (mangled to this name) as the transport
    # callback, so this override sees every peer message first.
    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        if self._pre_vote_handle(node, message):
            return
        if message.get("type") == "append_entries" and "entries" in message and "prevLogIdx" in message:
            message = trim_append_entries(message, self._journal)
        keep_next = None
        if message.get("type") == "next_node_idx" and message.get("success") and not message.get("reset"):
            keep_next = self._SyncObj__raftNextIndex.get(node)
        deadline = self._SyncObj__raftElectionDeadline
        SyncObj._SyncObj__onMessageReceived(self, node, message)  # type: ignore[attr-defined]
        if message.get("type") == "append_entries" and self._SyncObj__raftElectionDeadline != deadline:
            # The leader was heard. Handling its message may have taken seconds (installing a
            # big snapshot): restart the election timer from now, or this follower would call an
            # election the moment it is done, depose a healthy leader and restart its own
            # catch-up. That loop kept a replica from ever catching up from 1M accounts.
            self._SyncObj__raftElectionDeadline = monotonic() + self._SyncObj__generateRaftTimeout()
        chunk = message.get("serialized") if message.get("type") == "append_entries" else None
        if chunk is not None and not chunk[2]:
            # A follower answers snapshot chunks only after the last one, and a connection that
            # reads nothing for connectionTimeout is dropped: the leader then cancelled the
            # transfer and started it again, so a large snapshot never arrived. Acknowledge
            # each chunk (success=False, reset=False only marks the follower as alive).
            self._SyncObj__sendNextNodeIdx(node, success=False, reset=False)
        # pysyncobj moves nextIndex back to (match + 1) on every ack, even when later entries are
        # already in flight, and so resends them all; an ack never invalidates what was sent.
        if keep_next is not None and self._SyncObj__raftNextIndex.get(node, 0) < keep_next:
            self._SyncObj__raftNextIndex[node] = keep_next

    @replicated
    def apply_entry(self, entry: bytes) -> Any:
        return self._machine.apply(entry)

    @replicated
    def barrier(self) -> None:
        """An empty entry: once it is applied here, this replica has seen every earlier commit."""
        return None


def _end_with_parent(parent: int) -> None:
    """In a snapshot writer: die with the node. A writer outliving a SIGKILLed node could rename
    its file into place, or share the temporary file, under the node's successor."""
    if os.getpid() == parent:
        return  # no fork on this platform: writing in the node itself
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


class RaftReplicator:
    """One Raft member: propose entries, read barriers, membership, status."""

    def __init__(
        self,
        self_address: str,
        peers: list[str],
        data_dir: str,
        secret: str,
        machine: StateMachine,
        settings: RaftSettings = RaftSettings(),
        bind_address: str | None = None,
    ) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self._machine = machine
        self._dir = data_dir
        self._pid = os.getpid()
        self._snapshot_path = os.path.join(data_dir, "ledger.snapshot")
        self.journal = DurableJournal(
            data_dir,
            before_discard=self._make_snapshot_durable,
            snapshot_tail=snapshot.read_tail(self._snapshot_path),
        )
        conf = SyncObjConf(
            password=secret,
            bindAddress=bind_address,
            journalFile=self.journal,
            fullDumpFile=self._snapshot_path,
            serializer=self._write_snapshot,
            deserializer=self._read_snapshot,
            dynamicMembershipChange=True,
            appendEntriesUseBatch=False,  # we group commands ourselves; send each entry at once
            # pysyncobj cuts an entry larger than this into pieces through a path of its own; keep
            # every entry whole (the batcher's largest, 16,380 commands, is about 6 MB) and each
            # message small enough that a follower handles it before its election timer runs out.
            appendEntriesBatchSizeBytes=16 << 20,
            appendEntriesPeriod=settings.heartbeat_s,
            raftMinTimeout=settings.election_min_s,
            raftMaxTimeout=settings.election_max_s,
            connectionTimeout=max(3.5, settings.election_max_s * 2),
            connectionRetryTime=0.5,
            leaderFallbackTimeout=max(settings.election_max_s * 2, 2.0),
            logCompactionMinEntries=settings.compact_entries,
            logCompactionMinTime=settings.compact_seconds,
            logCompactionBatchSize=SNAPSHOT_CHUNK_BYTES,
            commandsWaitLeader=True,
            sendBufferSize=4 << 20,
            recvBufferSize=4 << 20,
            bindRetryTime=0.2,
            # Pods get new IPs when they are replaced; pysyncobj caches lookups for 10 minutes
            # by default, which kept a restarted member from reaching its peers for that long.
            dnsCacheTime=2.0,
            dnsFailCacheTime=1.0,
        )
        self._compact_bytes = settings.compact_bytes
        self._leadership: tuple[int, int, str | None] = (0, 0, None)
        self._engine = _Engine(self_address, peers, conf, self.journal, machine)
        self._engine.addOnTickCallback(self._on_tick)

    # -- proposals --------------------------------------------------------------------------

    def propose(self, entry: bytes, callback: Callback) -> None:
        """Replicate `entry`; `callback(result, outcome)` runs on the Raft thread once it is
        applied on this node (result is the state machine's return value) or has failed."""
        self._engine.apply_entry(entry, callback=lambda res, err: callback(res, _outcome(err)))

    def barrier(self, callback: Callback) -> None:
        """Call back once this node has applied everything committed before the call."""
        self._engine.barrier(callback=lambda res, err: callback(res, _outcome(err)))

    # -- membership -------------------------------------------------------------------------

    def add_member(self, address: str, callback: Callback) -> None:
        self._engine.addNodeToCluster(address, callback=lambda res, err: callback(res, _outcome(err)))

    def remove_member(self, address: str, callback: Callback) -> None:
        self._engine.removeNodeFromCluster(address, callback=lambda res, err: callback(res, _outcome(err)))

    def transfer_leadership(self, address: str | None, callback: Callback) -> None:
        self._engine.transferLeadership(address, callback=lambda res, err: callback(res, _outcome(err)))

    # -- status -----------------------------------------------------------------------------

    def _raw_status(self) -> dict[str, Any]:
        # getStatus iterates the engine's dicts while the Raft thread may resize them.
        for _ in range(5):
            try:
                return dict(self._engine.getStatus())
            except RuntimeError:
                continue
        return dict(self._engine.getStatus())

    def status(self) -> dict[str, Any]:
        raw = self._raw_status()
        members = sorted(
            [str(raw["self"])]
            + [
                key[len("partner_node_status_server_") :]
                for key in raw
                if key.startswith("partner_node_status_server_")
            ]
        )
        connected = {
            key[len("partner_node_status_server_") :]: value == 2
            for key, value in raw.items()
            if key.startswith("partner_node_status_server_")
        }
        role = _ROLES[raw["state"]]
        # Only a leader's numbers are current; a follower keeps those of its last leadership.
        match = {
            key[len("match_idx_server_") :]: value
            for key, value in raw.items()
            if key.startswith("match_idx_server_") and role == "leader"
        }
        leader = raw["leader"]
        return {
            "role": role,
            "term": raw["raft_term"],
            "leader": str(leader) if leader is not None else None,
            "commit_index": raw["commit_idx"],
            "applied_index": raw["last_applied"],
            "log_length": raw["log_len"],
            "journal_bytes": self.journal.size_bytes,
            "has_quorum": raw["has_quorum"],
            "members": members,
            "connected": connected,
            "peer_errors": self._engine._SyncObj__transport.peer_errors(),
            "match_index": match,
        }

    @property
    def is_leader(self) -> bool:
        return bool(self._engine._isLeader())

    def destroy(self) -> None:
        self._engine.destroy()
        self.journal.close()

    # -- engine hooks (Raft thread) ---------------------------------------------------------

    def _on_tick(self) -> None:
        if self.journal.size_bytes > self._compact_bytes:
            self._engine.forceLogCompaction()
        self._log_leadership()

    def _log_leadership(self) -> None:
        """Log each change of term, role or leader: the record an operator reads to tell why a
        cluster was briefly without a leader (who called the election, and when)."""
        engine = self._engine
        leader = engine._SyncObj__raftLeader
        now = (engine._SyncObj__raftCurrentTerm, engine._SyncObj__raftState, str(leader) if leader else None)
        if now != self._leadership:
            self._leadership = now
            term, state, leader_name = now
            role = _ROLES[state]
            if role == "follower":
                what = f"following {leader_name}" if leader_name else "follower, no leader known"
            else:
                what = "leading" if role == "leader" else "calling an election"
            log.info("raft term %d: %s", term, what)

    def _write_snapshot(self, path: str, data: tuple[Any, Any, Any]) -> None:
        """Runs in the forked child (see _Engine)."""
        _end_with_parent(self._pid)
        last, previous, cluster = data
        header = snapshot.Header(last=last, previous=previous, members=sorted(n.id for n in cluster))
        snapshot.write(path, header, self._machine.dump())

    def _read_snapshot(self, path: str) -> tuple[Any, Any, Any]:
        header, state = snapshot.read(path)
        self._machine.restore(state)
        return header.last, header.previous, {TCPNode(m) for m in header.members}

    def _make_snapshot_durable(self) -> None:
        # pysyncobj renamed the snapshot into place without syncing; do it before the journal
        # drops the entries the snapshot replaces.
        if os.path.exists(self._snapshot_path):
            fsync_file(self._snapshot_path)
        fsync_dir(self._dir)
