"""One Raft member: the pure core (core.py) driven on the node's event loop.

The loop steps the core with every tick and peer frame and handles each Ready in order: a
leader's AppendEntries and heartbeats go out at once (followers write while the leader does);
then one thread, the disk thread, installs a received snapshot, appends the entries and the hard
state and fsyncs them, all before any vote or acknowledgement leaves; then the disk thread
applies the committed entries to the state machine, and the loop settles the proposals and reads
waiting on them. Followers hand their proposals to the leader over the peer link and learn the
index the leader gave them, so every client is answered by the node it asked, from its own
state machine. Snapshots are files written by a forked child from the state as of one applied
index; the log is compacted only once that file is durable, and a follower that needs one is
streamed the file.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import msgspec

from . import snapshot, wire
from .core import CoreConfig, RaftCore, decode_conf_change, encode_conf_change
from .durable import fsync_dir
from .log_store import DiskLog
from .messages import (
    NONE,
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MsgType,
    Ready,
    Role,
    SnapshotMeta,
)
from .observer import IgnoreAll, Leadership, RaftObserver
from .transport import PeerTransport

log = logging.getLogger(__name__)

Callback = Callable[[Any, "Outcome"], None]
SNAPSHOT_CHUNK_BYTES = 1 << 20
RECEIVED_PREFIX = "received-"  # streamed snapshots, checked and waiting to be installed
MAX_APPLYING = 8  # batches of committed entries queued for the disk thread before the core holds more back
TICKS_PER_HEARTBEAT = 2


class Outcome(StrEnum):
    """How a proposal ended, in terms the HTTP layer can act on."""

    APPLIED = "applied"
    NO_LEADER = "no_leader"  # not in the log anywhere: safe to retry
    UNKNOWN = "unknown"  # may or may not be applied: retry with the same ids


class StateMachine(Protocol):
    """The replicated state. Called only from the disk thread."""

    def apply(self, entry: bytes) -> Any: ...
    def dump(self) -> bytes: ...
    def restore(self, state: bytes) -> None: ...


@dataclass(frozen=True)
class RaftSettings:
    heartbeat_s: float = 0.1
    election_min_s: float = 0.5  # a follower campaigns after [min, 2 * min) without a leader
    compact_entries: int = 2000  # snapshot and compact after this many applied entries
    compact_bytes: int = 256 << 20  # ... or this many bytes of log


def _end_with_parent(parent: int) -> None:
    """In a snapshot writer: die with the node. A writer outliving a SIGKILLed node could rename
    its file into place under the node's successor."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _fail_stop(task: asyncio.Task[Any]) -> None:
    """A Raft task that ends by an error (a failed invariant) must take the node down with it:
    a member that stopped replicating but still answers would be worse than one that restarts."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("raft task %s failed; stopping this node", task.get_name(), exc_info=task.exception())
        os._exit(70)


class Replicator:
    """Propose entries, read barriers, membership, leadership, status: the node's view of Raft."""

    def __init__(
        self,
        node_id: int,
        cluster: str,
        peers: dict[int, str],
        founding: bool,
        data_dir: str,
        secret: str,
        machine: StateMachine,
        settings: RaftSettings = RaftSettings(),
        bind_address: str | None = None,
        observer: RaftObserver = IgnoreAll(),
    ) -> None:
        """`node_id` and the keys of `peers` (node id -> raft address, this node's included) start
        at 1. A `founding` member with no data starts a new cluster of all `peers`; any other
        starts empty and waits for a leader to add it and send it a snapshot."""
        assert node_id in peers, "the peers include this node"
        self.id = node_id
        self.peers = peers
        self.founding = founding
        self.observer = observer
        self._leadership = Leadership()
        self.machine = machine
        self.settings = settings
        self.dir = data_dir
        self.snapshot_path = os.path.join(data_dir, "ledger.snapshot")
        self.incoming_path = os.path.join(data_dir, "incoming.snapshot")
        self.tick_s = settings.heartbeat_s / TICKS_PER_HEARTBEAT
        self.election_timeout_s = 2 * settings.election_min_s  # the longest a follower waits
        self._quorum_known_at = time.monotonic()
        self.transport = PeerTransport(
            node_id,
            cluster,
            secret,
            bind_address or peers[node_id],
            self,
            timeout_s=max(3.0, 4 * settings.election_min_s),
        )
        self._disk = ThreadPoolExecutor(1, thread_name_prefix="raft-disk")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._proposals: dict[int, tuple[int, Callback]] = {}  # index -> (term, callback)
        self._forwarded: dict[int, Callback] = {}  # forward id -> callback, until the leader answers
        self._forward_ids = itertools.count(1)
        self._reads: dict[bytes, Callback] = {}
        self._read_ids = itertools.count(1)
        self._reads_to_serve: list[tuple[int, Callback]] = []
        self._transfers: list[tuple[int, int, Callback]] = []  # (leader then, wanted (NONE: any), callback)
        self._incoming: tuple[int, Any] | None = None  # (sender, open file) of a snapshot being received
        self._received_ids = itertools.count(1)
        self._accepted: dict[SnapshotMeta, str] = {}  # snapshots the core adopted -> their verified files
        self._snapshotting = False
        self._applying: deque[asyncio.Future[list[Any]]] = deque()
        self._receiving_since = 0.0  # when the first chunk of the snapshot being received came
        self.applied = 0  # by the disk thread, as the state machine applies
        self.settled = 0  # by the loop: the last index whose proposals are answered
        self.log: DiskLog
        self.core: RaftCore

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        if os.path.exists(os.path.join(self.dir, "raft.journal")):
            raise RuntimeError(
                f"{self.dir} holds a journal of an older walletnode (pysyncobj), which this version cannot read: "
                "remove the data directory and let this member catch up from the others"
            )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._disk, self._open)
        config = CoreConfig(
            id=self.id,
            election_ticks=max(TICKS_PER_HEARTBEAT + 1, round(self.settings.election_min_s / self.tick_s)),
            heartbeat_ticks=TICKS_PER_HEARTBEAT,
            max_msg_bytes=4 << 20,
            max_inflight_msgs=64,
            max_inflight_bytes=32 << 20,
            max_apply_bytes=8 << 20,
        )
        self.core = RaftCore(config, self.log, random.Random(int.from_bytes(os.urandom(8), "big")))
        await self.transport.start()
        self._tasks = [
            loop.create_task(self._ticker(), name="raft-ticker"),
            loop.create_task(self._ready_loop(), name="raft-ready"),
        ]
        for task in self._tasks:
            task.add_done_callback(_fail_stop)
        self._kick()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=5)
        await self.transport.close()
        await asyncio.get_running_loop().run_in_executor(self._disk, self.log.close)
        self._disk.shutdown()

    def _open(self) -> None:
        """Disk thread: open the log; load the newest snapshot into the state machine."""
        for name in os.listdir(self.dir):
            if name.startswith(RECEIVED_PREFIX):  # received before a crash, never installed
                os.unlink(os.path.join(self.dir, name))
        self.log = DiskLog(os.path.join(self.dir, "log"))
        if self.log.is_new and self.founding and not os.path.exists(self.snapshot_path):
            conf = ConfState(voters=frozenset(self.peers), addresses=tuple(sorted(self.peers.items())))
            meta = SnapshotMeta(1, 1, conf)
            self._write_snapshot_file(meta, self.machine.dump())
            self.log.bootstrap(meta, HardState(term=1, commit=1))
        if os.path.exists(self.snapshot_path):
            meta, state = snapshot.read(self.snapshot_path)
            self.machine.restore(state)
            self.applied = self.settled = meta.index
            self._catch_log_up_with(meta)

    def _catch_log_up_with(self, meta: SnapshotMeta) -> None:
        """Finish what a crash interrupted between a snapshot file's rename and the log's change."""
        held = self.log.snapshot().index
        assert meta.index >= held, f"the log is compacted past the snapshot file ({held} > {meta.index})"
        if meta.index == held:
            return
        if meta.index <= self.log.last_index() and self.log.term(meta.index) == meta.term:
            self.log.compact(meta)
        else:
            self.log.install(meta)

    def _write_snapshot_file(self, meta: SnapshotMeta, state: bytes) -> None:
        temporary = self.snapshot_path + ".tmp"
        snapshot.write(temporary, meta, state)
        os.replace(temporary, self.snapshot_path)
        fsync_dir(self.dir)

    # -- inputs -----------------------------------------------------------------------------

    def propose(self, entry: bytes, callback: Callback) -> None:
        """Replicate `entry`; `callback(result, outcome)` runs on the loop once this node has
        applied it (result: the state machine's answer) or knows it never will."""
        index = self.core.propose(entry)
        if index is not None:
            self._proposals[index] = (self.core.term, callback)
            self._kick()
        else:
            self._forward(wire.ForwardKind.ENTRY, entry, callback)

    def barrier(self, callback: Callback) -> None:
        """Call back once this node has applied everything committed before the call."""
        context = next(self._read_ids).to_bytes(8, "big")
        if not self.core.read_index(context):
            callback(None, Outcome.NO_LEADER)
            return
        self._reads[context] = callback
        self._kick()

    def add_member(self, address: str, node_id: int, callback: Callback) -> None:
        self._change(ConfChange(ConfChangeKind.ADD_LEARNER, node_id, address), callback)

    def remove_member(self, address: str, callback: Callback) -> None:
        node = next((n for n, a in self.core.conf.addresses if a == address), None)
        if node is None:
            callback(None, Outcome.NO_LEADER)
            return
        self._change(ConfChange(ConfChangeKind.REMOVE, node), callback)

    def transfer_leadership(self, address: str | None, callback: Callback) -> None:
        """Hand leadership to the member at `address` (None: the most up-to-date voter)."""
        target = NONE
        if address is not None:
            target = next((n for n, a in self.core.conf.addresses if a == address), -1)
            if target < 0:
                callback(None, Outcome.NO_LEADER)
                return
        self._transfers.append((self.core.leader, target, callback))
        if self.core.role == Role.LEADER:
            self._transfer(target)
        elif self.core.leader != NONE:
            self._send_forward(wire.ForwardKind.TRANSFER, target.to_bytes(8, "big"), None)
        self._kick()

    def _change(self, change: ConfChange, callback: Callback) -> None:
        data = encode_conf_change(change)
        index = self.core.propose_conf_change(change)
        if index is not None:
            self._proposals[index] = (self.core.term, callback)
            self._kick()
        elif self.core.role == Role.LEADER:
            callback(None, Outcome.NO_LEADER)  # another change is still being applied
        else:
            self._forward(wire.ForwardKind.CONF_CHANGE, data, callback)

    def _forward(self, kind: wire.ForwardKind, data: bytes, callback: Callback) -> None:
        if self.core.leader in (NONE, self.id):
            callback(None, Outcome.NO_LEADER)
            return
        self._send_forward(kind, data, callback)

    def _send_forward(self, kind: wire.ForwardKind, data: bytes, callback: Callback | None) -> None:
        forward_id = next(self._forward_ids)
        if callback is not None:
            self._forwarded[forward_id] = callback
        self._send_frame(self.core.leader, wire.Kind.FORWARD, wire.Forward(forward_id, kind, data))

    def _transfer(self, target: int) -> None:
        if target == NONE:
            voters = [n for n, m in self.core.match_indexes().items() if n in self.core.conf.voters and n != self.id]
            if not voters:
                return
            target = max(voters, key=lambda n: self.core.match_indexes()[n])
        self.core.transfer_leadership(target)

    # -- the transport's calls ----------------------------------------------------------------

    def on_frame(self, peer: int, kind: wire.Kind, body: Any) -> None:
        try:
            self._on_frame(peer, kind, body)
        except AssertionError:
            log.critical("a raft invariant failed; stopping this node", exc_info=True)
            os._exit(70)

    def _on_frame(self, peer: int, kind: wire.Kind, body: Any) -> None:
        if kind == wire.Kind.RAFT:
            if body.to == self.id and body.type != MsgType.SNAPSHOT:  # a snapshot comes as a stream
                self.core.step(body)
        elif kind == wire.Kind.FORWARD:
            self._on_forward(peer, body)
        elif kind == wire.Kind.FORWARDED:
            self._on_forwarded(body)
        elif kind == wire.Kind.SNAPSHOT_CHUNK:
            self._on_snapshot_chunk(peer, body)
        elif kind == wire.Kind.SNAPSHOT_DONE:
            self._on_snapshot_done(peer, body)
        self._kick()

    def on_link_down(self, peer: int) -> None:
        self.core.report_unreachable(peer)
        self._kick()

    def _on_forward(self, peer: int, forward: wire.Forward) -> None:
        index: int | None = None
        if forward.kind == wire.ForwardKind.ENTRY:
            index = self.core.propose(forward.data)
        elif forward.kind == wire.ForwardKind.CONF_CHANGE:
            index = self.core.propose_conf_change(decode_conf_change(forward.data))
        elif self.core.role == Role.LEADER:
            self._transfer(int.from_bytes(forward.data, "big"))
            return
        self._send_frame(peer, wire.Kind.FORWARDED, wire.Forwarded(forward.id, index or 0, self.core.term))

    def _on_forwarded(self, answer: wire.Forwarded) -> None:
        callback = self._forwarded.pop(answer.id, None)
        if callback is None:
            return
        if answer.index == 0:
            callback(None, Outcome.NO_LEADER)
        elif answer.index <= self.settled:
            callback(None, Outcome.UNKNOWN)  # applied before we heard where: its result is gone
        else:
            self._proposals[answer.index] = (answer.term, callback)

    # -- time -------------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.core.tick()
            self._kick()
            _ = self.leader_with_quorum_known  # keeps quorum_known_at current

    def _kick(self) -> None:
        self._wake.set()

    # -- Ready ------------------------------------------------------------------------------

    async def _ready_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.core.has_ready(apply := self._can_apply()):
                await self._handle(self.core.ready(apply))
            self._after_changes()

    async def _handle(self, ready: Ready) -> None:
        loop = asyncio.get_running_loop()
        early = [m for m in ready.messages if m.type in (MsgType.APPEND, MsgType.HEARTBEAT)]
        for message in early:
            self._send_message(message)
        if ready.snapshot is not None:
            received = self._accepted.pop(ready.snapshot)
            await loop.run_in_executor(self._disk, self._restore, ready.snapshot, received)
            self.log.install(ready.snapshot)
        if ready.entries or ready.hard_state is not None:
            await self._persist(ready)
        for message in ready.messages:
            if message.type not in (MsgType.APPEND, MsgType.HEARTBEAT):
                self._send_message(message)
        if ready.committed:
            await self._hand_to_state_machine(ready.committed)
        for read in ready.reads:
            callback = self._reads.pop(read.context, None)
            if callback is not None:
                self._reads_to_serve.append((read.index, callback))
        self.core.advance(ready)
        self._serve_reads()

    def _can_apply(self) -> bool:
        while self._applying and self._applying[0].done():
            self._applying.popleft()
        return len(self._applying) < MAX_APPLYING

    async def _hand_to_state_machine(self, entries: list[Entry]) -> None:
        """The disk thread applies the entries while the loop goes on with the next Ready: a big
        batch (or a restart's replay) must not hold back votes and acknowledgements. Jobs run and
        settle in order (one thread); with MAX_APPLYING queued, Readies carry no committed entries
        (the core keeps them) until one is done."""
        job = asyncio.get_running_loop().run_in_executor(self._disk, self._apply, entries)
        job.add_done_callback(lambda done: self._applied(entries, done))
        self._applying.append(job)

    def _applied(self, entries: list[Entry], job: asyncio.Future[list[Any]]) -> None:
        if job.cancelled():
            return
        error = job.exception()
        if error is not None:
            log.critical("applying committed entries failed; stopping this node", exc_info=error)
            os._exit(70)
        self._settle(entries, job.result())
        self._serve_reads()
        self._kick()  # committed entries the core held back while the queue was full may go now

    async def _persist(self, ready: Ready) -> None:
        """Entries and hard state, durable before anything that depends on them is sent. On the
        loop, like every use of the log: the core reads it between steps. A full disk stops
        everything here, acknowledging nothing, until space returns (an append is idempotent)."""
        while True:
            try:
                self.log.append(ready.entries)
                if ready.hard_state is not None:
                    self.log.set_hard_state(ready.hard_state)
                started = time.perf_counter()
                self.log.sync()
                self.observer.fsynced(time.perf_counter() - started)
                return
            except OSError as exc:
                log.error("cannot persist the raft log, retrying: %s", exc)
                await asyncio.sleep(1.0)

    def _restore(self, meta: SnapshotMeta, path: str) -> None:
        """Disk thread: the received snapshot becomes this node's, and the state machine's."""
        received, state = snapshot.read(path)
        assert received == meta, (received, meta)
        os.replace(path, self.snapshot_path)
        fsync_dir(self.dir)
        self.machine.restore(state)
        self.applied = self.settled = meta.index
        self.observer.snapshot_installed(
            time.perf_counter() - self._receiving_since, os.path.getsize(self.snapshot_path)
        )
        log.info("installed a snapshot at index %d (term %d)", meta.index, meta.term)

    def _apply(self, entries: list[Entry]) -> list[Any]:
        """Disk thread: the state machine applies ledger entries; Raft's own are skipped."""
        results = []
        for entry in entries:
            assert entry.index == self.applied + 1, (entry.index, self.applied)
            results.append(self.machine.apply(entry.data) if entry.kind == EntryKind.NORMAL and entry.data else None)
            self.applied = entry.index
        return results

    def _settle(self, entries: list[Entry], results: list[Any]) -> None:
        self.settled = entries[-1].index
        for entry, result in zip(entries, results, strict=True):
            waiting = self._proposals.pop(entry.index, None)
            if waiting is None:
                continue
            term, callback = waiting
            # Another entry at our index means ours was overwritten before it committed.
            callback(result, Outcome.APPLIED if entry.term == term else Outcome.NO_LEADER)

    def _serve_reads(self) -> None:
        ready = [callback for index, callback in self._reads_to_serve if index <= self.applied]
        self._reads_to_serve = [(i, c) for i, c in self._reads_to_serve if i > self.applied]
        for callback in ready:
            callback(None, Outcome.APPLIED)

    def _after_changes(self) -> None:
        self._note_leadership()
        self._settle_transfers()
        members = self.core.conf.members
        self.transport.forget(lambda peer: peer in members or peer in self.peers)
        self._maybe_snapshot()

    def _note_leadership(self) -> None:
        """Log each change of term, role or leader (and tell the observer); a lost leadership ends
        the waits that can no longer succeed here, so callers retry at once instead of timing out."""
        term, role, leader = self.core.term, self.core.role, self.core.leader
        role_name = {Role.LEADER: "leader", Role.FOLLOWER: "follower"}.get(role, "candidate")
        address = self._address(leader) if leader else None
        if not self._leadership.update(term, role_name, address, self.observer):
            return
        if role == Role.LEADER:
            log.info("raft term %d: leading", term)
        elif role_name == "candidate":
            log.info("raft term %d: calling an election", term)
        else:
            log.info("raft term %d: %s", term, f"following {address}" if address else "no leader known")
        reads, self._reads = self._reads, {}
        forwarded, self._forwarded = self._forwarded, {}
        for callback in reads.values():
            callback(None, Outcome.NO_LEADER)
        for callback in forwarded.values():
            callback(None, Outcome.UNKNOWN)

    def _settle_transfers(self) -> None:
        leader = self.core.leader
        pending = []
        for before, wanted, callback in self._transfers:
            if leader not in (NONE, before) and wanted in (NONE, leader):
                callback(None, Outcome.APPLIED)
            else:
                pending.append((before, wanted, callback))
        self._transfers = pending

    # -- sending ----------------------------------------------------------------------------

    def _address(self, node: int) -> str | None:
        return self.core.conf.address(node) or self.peers.get(node)

    def _send_frame(self, to: int, kind: wire.Kind, body: Any) -> None:
        address = self._address(to)
        if address is not None:
            self.transport.send(to, address, kind, body)

    def _send_message(self, message: Message) -> None:
        if message.type == MsgType.SNAPSHOT:
            asyncio.get_running_loop().create_task(self._stream_snapshot(message))
        else:
            self._send_frame(message.to, wire.Kind.RAFT, message)

    # -- snapshots --------------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        """Snapshot at the last index handed to the state machine: the disk thread reaches it
        (jobs run in order) before it forks, and the core's configuration is the one as of it."""
        handed = self.core.log.applied
        held = self.log.snapshot().index
        due = handed - held >= self.settings.compact_entries or (
            self.log.size_bytes > self.settings.compact_bytes and handed > held
        )
        if due and not self._snapshotting:
            self._snapshotting = True
            meta = SnapshotMeta(handed, self.log.term(handed), self.core.conf_state())
            asyncio.get_running_loop().create_task(self._take_snapshot(meta))

    async def _take_snapshot(self, meta: SnapshotMeta) -> None:
        """A forked child writes the state as of `meta.index` (the disk thread forks between two
        applies), then the log is compacted up to it."""
        loop = asyncio.get_running_loop()
        try:
            pid = await loop.run_in_executor(self._disk, self._fork_writer, meta)
            _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                log.error("the snapshot writer failed (exit status %d)", os.waitstatus_to_exitcode(status))
                return
            self._finish_snapshot(meta)
        finally:
            self._snapshotting = False

    def _fork_writer(self, meta: SnapshotMeta) -> int:
        assert self.applied == meta.index, (self.applied, meta.index)
        parent = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        try:  # the child: write, fsync, exit, never return into the node's code
            _end_with_parent(parent)
            snapshot.write(self.snapshot_path + ".tmp", meta, self.machine.dump())
            os._exit(0)
        finally:
            os._exit(1)

    def _finish_snapshot(self, meta: SnapshotMeta) -> None:
        if meta.index <= self.log.snapshot().index:  # a newer one was installed meanwhile
            os.unlink(self.snapshot_path + ".tmp")
            return
        os.replace(self.snapshot_path + ".tmp", self.snapshot_path)
        fsync_dir(self.dir)
        self.log.compact(meta)

    async def _stream_snapshot(self, message: Message) -> None:
        """Send the snapshot file in chunks, as fast as the link drains, then its metadata."""
        loop = asyncio.get_running_loop()
        to = message.to
        address = self._address(to)
        ok = False
        started = time.perf_counter()
        try:
            if address is None:
                return
            link = self.transport.link(to, address)
            with open(self.snapshot_path, "rb") as f:
                offset = 0
                while chunk := await loop.run_in_executor(None, f.read, SNAPSHOT_CHUNK_BYTES):
                    if offset and not link.connected:
                        return  # the stream broke; the follower will be sent a fresh one
                    await link.room.wait()
                    self.transport.send(to, address, wire.Kind.SNAPSHOT_CHUNK, wire.SnapshotChunk(offset, chunk))
                    offset += len(chunk)
            f_meta, _ = await loop.run_in_executor(None, snapshot.read, self.snapshot_path)
            sent = msgspec.structs.replace(message, snapshot=f_meta)
            self.transport.send(to, address, wire.Kind.SNAPSHOT_DONE, wire.SnapshotDone(sent, offset))
            ok = True
            self.observer.snapshot_sent(time.perf_counter() - started, offset)
        except OSError as exc:
            log.warning("sending a snapshot to %s failed: %s", address, exc)
        finally:
            self.core.report_snapshot(to, ok)
            self._kick()

    def _on_snapshot_chunk(self, peer: int, chunk: wire.SnapshotChunk) -> None:
        if chunk.offset == 0:
            if self._incoming is not None:
                self._incoming[1].close()
            self._incoming = (peer, open(self.incoming_path, "wb"))  # noqa: SIM115 - kept open across frames
            self._receiving_since = time.perf_counter()
        if self._incoming is None or self._incoming[0] != peer or self._incoming[1].tell() != chunk.offset:
            return  # a stream we joined midway, or from another sender: wait for a fresh one
        self._incoming[1].write(chunk.data)

    def _on_snapshot_done(self, peer: int, done: wire.SnapshotDone) -> None:
        incoming, self._incoming = self._incoming, None
        if incoming is None or incoming[0] != peer:
            return
        size = incoming[1].tell()
        incoming[1].close()
        if size == done.size:
            # Under its own name: the next stream (the leader may send a newer one at any time)
            # starts a fresh incoming file while this one waits to be checked and installed.
            received = os.path.join(self.dir, f"{RECEIVED_PREFIX}{next(self._received_ids)}.snapshot")
            os.replace(self.incoming_path, received)
            asyncio.get_running_loop().create_task(self._check_and_step(done.message, received))

    async def _check_and_step(self, message: Message, received: str) -> None:
        """Verify the received file (framing, checksums, metadata) before the core sees it; keep
        it if the core adopts it (it is then installed by a later Ready), else drop it."""
        try:
            meta, _ = await asyncio.get_running_loop().run_in_executor(self._disk, snapshot.read, received)
        except (OSError, snapshot.CorruptSnapshot) as exc:
            log.warning("discarded a received snapshot: %s", exc)
            meta = None
        if meta is not None and meta == message.snapshot:
            self.core.step(message)
            self._kick()
        if meta is None or self.core.log.pending_snapshot != meta:
            os.unlink(received)  # corrupt, or the core had no use for it
            return
        for superseded in [m for m in self._accepted if m.index < meta.index]:
            os.unlink(self._accepted.pop(superseded))  # the core installs only the newest
        self._accepted[meta] = received

    # -- status -----------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.core.role == Role.LEADER

    @property
    def leader_with_quorum_known(self) -> bool:
        """Leading with a connected majority, or following a leader we are connected to. (A
        leader that cannot hear a majority for an election timeout also steps down.)"""
        core = self.core
        if core.role == Role.LEADER:
            voters = core.conf.voters
            reachable = sum(1 for v in voters if v == self.id or self.transport.connected(v))
            known = reachable >= len(voters) // 2 + 1
        else:
            known = core.leader != NONE and self.transport.connected(core.leader)
        if known:
            self._quorum_known_at = time.monotonic()
        return known

    def quorum_known_at(self) -> float:
        """When (monotonic clock) this node last knew a leader with a quorum, checked every tick."""
        _ = self.leader_with_quorum_known
        return self._quorum_known_at

    def status(self) -> dict[str, Any]:
        core = self.core
        conf = core.conf
        role = {Role.LEADER: "leader", Role.FOLLOWER: "follower"}.get(core.role, "candidate")
        members = sorted(a for n, a in conf.addresses if n in conf.members)
        me = self._address(self.id)
        return {
            "role": role,
            "term": core.term,
            "leader": self._address(core.leader) if core.leader else None,
            "commit_index": core.log.committed,
            "applied_index": self.applied,
            "log_length": core.log.last_index() - core.log.first_index() + 1,
            "journal_bytes": self.log.size_bytes,
            "has_quorum": core.leader != NONE,
            "members": members,
            "learners": sorted(a for n, a in conf.addresses if n in conf.learners),
            "member_ids": {a: n - 1 for n, a in conf.addresses},  # Raft ids start at 1, member ids at 0
            "connected": {a: self.transport.connected(n) for n, a in conf.addresses if a != me},
            "peer_errors": {a: e for n, e in self.transport.errors().items() if (a := self._address(n))},
            "match_index": {self._address(n): m for n, m in core.match_indexes().items() if n != self.id},
        }
