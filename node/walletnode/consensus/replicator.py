"""One Raft member: the pure core (core.py) driven on the node's event loop.

The loop steps the core with every tick and peer frame and handles each Ready in order: a
leader's AppendEntries and heartbeats go out at once (followers write while the leader does);
then one thread, the disk thread, installs a received snapshot, appends the entries and the hard
state and fsyncs them, all before any vote or acknowledgement leaves; then the disk thread
applies the committed entries to the state machine, and the loop settles the proposals and reads
waiting on them. Followers hand their proposals to the leader over the peer link and learn the
index the leader gave them, so every client is answered by the node it asked, from its own
state machine. The state machine keeps its own state durable, with the last index it applied
(which a restart starts from): the log is compacted once the state is synced past the compacted
index, and a follower that needs a snapshot is streamed one consistent read view of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from . import wire
from .core import CoreConfig, RaftCore, decode_conf_change, encode_conf_change
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
#: How often the disk thread publishes what it applied while entries keep coming (etcd's backend
#: commits every 100 ms too): a commit writes every page it dirtied and fsyncs, so fewer, larger
#: ones write far less per transfer. A linearizable read waiting on an unpublished entry, an idle
#: disk thread, or PUBLISH_BYTES of entries publish at once.
PUBLISH_EVERY_S = 0.25
PUBLISH_BYTES = 1 << 20
TICKS_PER_HEARTBEAT = 2


class Outcome(StrEnum):
    """How a proposal ended, in terms the HTTP layer can act on."""

    APPLIED = "applied"
    NO_LEADER = "no_leader"  # not in the log anywhere: safe to retry
    UNKNOWN = "unknown"  # may or may not be applied: retry with the same ids


class SnapshotView(Protocol):
    """One consistent read view of the state machine, as of Raft index `index`."""

    index: int

    def write_to(self, fd: int) -> None:
        """Write the view to `fd` (a pipe), while the state machine goes on applying."""
        ...


class StateMachine(Protocol):
    """The replicated state, durable on its own. Called from the disk thread, except `snapshot`."""

    def applied_index(self) -> int:
        """The last Raft index whose effects the state holds (0: none)."""
        ...

    def apply_unpublished(self, entries: Sequence[tuple[int, bytes | None]]) -> list[Any]:
        """Apply (index, data) in order; data None is an entry of Raft's own. One result per
        entry (entries at or below the last applied are skipped). The effects are not visible
        nor stored until `publish`: a crash before it loses them, and the journal replays them.
        Raises OSError (nothing of `entries` applied) when the disk refuses, to be tried again."""
        ...

    def unpublished_bytes(self) -> int:
        """Entry bytes applied since the last `publish`."""
        ...

    def publish(self) -> int:
        """Store and show readers everything applied (one unit recording the last index); the
        index it got to. Raises OSError when the disk refuses, to be tried again."""
        ...

    def sync(self) -> None:
        """Publish, and make everything published durable: the log may then be compacted up to it."""
        ...

    def snapshot(self) -> AbstractContextManager[SnapshotView]: ...

    def check_snapshot(self, path: str) -> int:
        """The index of a received snapshot file; raises ValueError if it is not one."""
        ...

    def install_snapshot(self, path: str) -> int:
        """Replace the state with the received file at `path` (moved, not copied); its index."""
        ...


@dataclass(frozen=True)
class RaftSettings:
    heartbeat_s: float = 0.1
    election_min_s: float = 0.5  # a follower campaigns after [min, 2 * min) without a leader
    compact_entries: int = 2000  # snapshot and compact after this many applied entries
    compact_bytes: int = 256 << 20  # ... or this many bytes of log


def _read_chunk(fd: int) -> bytes:
    """Up to SNAPSHOT_CHUNK_BYTES from a pipe (which hands out less at a time); b"" at its end."""
    parts = []
    size = 0
    while size < SNAPSHOT_CHUNK_BYTES and (part := os.read(fd, SNAPSHOT_CHUNK_BYTES - size)):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


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
        self._accepted: dict[SnapshotMeta, str] = {}  # snapshots the core adopted -> their checked files
        self._compacting = False
        self._streams = 0  # snapshots being sent: no compaction meanwhile, so the entries after them stay
        self._applying: deque[asyncio.Future[Any]] = deque()  # jobs of the disk thread, oldest first
        self._handed: deque[list[Entry]] = deque()  # committed groups no job has taken yet (thread-safe ends)
        self._receiving_since = 0.0  # when the first chunk of the snapshot being received came
        self.applied = 0  # by the disk thread, as the state machine applies
        self.published = 0  # by the disk thread: what readers of the state machine see
        self._published_at = time.monotonic()
        self._publishing = False  # a publish job is queued
        self._publish_timer = False  # a publish is due after PUBLISH_EVERY_S
        self._disk_closed = False
        self.settled = 0  # by the loop: the last index whose proposals are answered
        self.log: DiskLog
        self.core: RaftCore

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        for older, kind in (("raft.journal", "a journal of pysyncobj"), ("ledger.snapshot", "a snapshot file")):
            if os.path.exists(os.path.join(self.dir, older)):
                raise RuntimeError(
                    f"{self.dir} holds {kind} of an older walletnode, which this version cannot read: "
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
        with contextlib.suppress(Exception):  # best effort: the journal holds what is not published
            await asyncio.get_running_loop().run_in_executor(self._disk, self.machine.publish)
        await asyncio.get_running_loop().run_in_executor(self._disk, self.log.close)
        self._disk_closed = True
        self._disk.shutdown()

    def _open(self) -> None:
        """Disk thread: open the log (a founding member's first start writes its first snapshot:
        the configuration, at index 1). The core replays the entries after the log's snapshot;
        the state machine skips those at or below its own index, so only the tail after that
        is applied, and the configuration changes among them reach the core."""
        for name in os.listdir(self.dir):  # snapshots received before a stop, never installed
            if name.startswith(RECEIVED_PREFIX) or name == os.path.basename(self.incoming_path):
                os.unlink(os.path.join(self.dir, name))
        self.log = DiskLog(os.path.join(self.dir, "log"))
        if self.log.is_new and self.founding:
            conf = ConfState(voters=frozenset(self.peers), addresses=tuple(sorted(self.peers.items())))
            self.log.bootstrap(SnapshotMeta(1, 1, conf), HardState(term=1, commit=1))
        held, stored = self.log.snapshot().index, self.machine.applied_index()
        assert stored >= held or held <= 1, f"the log is compacted past the state machine ({held} > {stored})"
        self.applied = self.settled = self.published = held

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
        self._handed.append(entries)
        job = asyncio.get_running_loop().run_in_executor(self._disk, self._apply_handed)
        job.add_done_callback(self._applied)
        self._applying.append(job)

    def _applied(self, job: asyncio.Future[list[tuple[list[Entry], list[Any]]]]) -> None:
        if job.cancelled():
            return
        error = job.exception()
        if error is not None:
            log.critical("applying committed entries failed; stopping this node", exc_info=error)
            os._exit(70)
        for entries, results in job.result():
            self._settle(entries, results)
        self._serve_reads()
        if (
            self.machine.unpublished_bytes() >= PUBLISH_BYTES
            or time.monotonic() - self._published_at >= PUBLISH_EVERY_S
        ):
            self._publish_soon()  # after the applies queued so far, whose answers are out
        else:
            self._publish_later()
        self._kick()  # committed entries the core held back while the queue was full may go now

    def _publish_soon(self) -> None:
        """Queue a publish on the disk thread unless one is queued or nothing is unpublished."""
        self._publish_timer = False
        if self.published < self.applied and not self._publishing and not self._disk_closed:
            self._publishing = True
            job = asyncio.get_running_loop().run_in_executor(self._disk, self._publish)
            job.add_done_callback(self._published)

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
        """Disk thread: the received snapshot becomes the state machine's. Its index may be past
        `meta.index` (the view was taken after the leader's log snapshot): the entries between
        are skipped by the state machine when the core hands them over."""
        size = os.path.getsize(path)
        index = self.machine.install_snapshot(path)
        assert index >= meta.index, (index, meta.index)
        self.applied = self.settled = meta.index
        self.published = index
        self.observer.snapshot_installed(time.perf_counter() - self._receiving_since, size)
        log.info("installed a snapshot at index %d (term %d), state at index %d", meta.index, meta.term, index)

    def _apply_handed(self) -> list[tuple[list[Entry], list[Any]]]:
        """Disk thread: apply every group handed so far in one call, so that under load the state
        machine writes fewer, fuller transactions; the jobs queued behind this one find their
        group done and settle nothing. Returns (group, its results) in order. Proposals are
        answered from the results before they are published (the journal holds the entries on
        a quorum and applying them again gives the same results); reads wait for `published`."""
        groups: list[list[Entry]] = []
        while self._handed:
            groups.append(self._handed.popleft())
        if not groups:
            return []
        results = self._apply([entry for group in groups for entry in group])
        settled, start = [], 0
        for group in groups:
            settled.append((group, results[start : start + len(group)]))
            start += len(group)
        return settled

    def _apply(self, entries: list[Entry]) -> list[Any]:
        """The state machine applies the entries; Raft's own entries only advance its index. A full
        disk holds them (and the core, once MAX_APPLYING are queued) until space returns."""
        assert entries[0].index == self.applied + 1, (entries[0].index, self.applied)
        group = [(e.index, e.data if e.kind == EntryKind.NORMAL and e.data else None) for e in entries]
        while True:
            try:
                results = self.machine.apply_unpublished(group)
                break
            except OSError as exc:
                log.error("cannot apply committed entries, retrying: %s", exc)
                time.sleep(1.0)
        self.applied = entries[-1].index
        return results

    def _publish(self) -> None:
        """Disk thread: publish what the state machine applied, retrying while the disk is full."""
        while True:
            try:
                self.published = self.machine.publish()
                break
            except OSError as exc:
                log.error("cannot store applied entries, retrying: %s", exc)
                time.sleep(1.0)
        self._published_at = time.monotonic()

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
        ready = [callback for index, callback in self._reads_to_serve if index <= self.published]
        self._reads_to_serve = [(i, c) for i, c in self._reads_to_serve if i > self.published]
        for callback in ready:
            callback(None, Outcome.APPLIED)
        if any(index <= self.applied for index, _ in self._reads_to_serve):
            self._publish_soon()  # reads wait on applied entries not yet published: publish now

    def _published(self, job: asyncio.Future[None]) -> None:
        self._publishing = False
        if not job.cancelled() and job.exception() is not None:
            log.critical("storing applied entries failed; stopping this node", exc_info=job.exception())
            os._exit(70)
        self._serve_reads()
        self._publish_later()

    def _publish_later(self) -> None:
        if self.published < self.applied and not self._publish_timer:
            self._publish_timer = True  # nothing more may come: publish what was applied after all
            asyncio.get_running_loop().call_later(PUBLISH_EVERY_S, self._publish_when_due)

    def _publish_when_due(self) -> None:
        """The timer's publish, unless another came since: publishing PUBLISH_EVERY_S after the
        timer was set instead of after the last publish made every other unit a small one."""
        wait = self._published_at + PUBLISH_EVERY_S - time.monotonic()
        if wait > 0 and not self._publishing:
            asyncio.get_running_loop().call_later(wait, self._publish_when_due)
        else:
            self._publish_soon()

    def _after_changes(self) -> None:
        self._note_leadership()
        self._settle_transfers()
        members = self.core.conf.members
        self.transport.forget(lambda peer: peer in members or peer in self.peers)
        self._maybe_compact()

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

    def _maybe_compact(self) -> None:
        """Compact the log up to the last index handed to the state machine, once the state
        machine has made it durable: the disk thread syncs after the applies queued before (jobs
        run in order), and the core's configuration is the one as of that index."""
        handed = self.core.log.applied
        held = self.log.snapshot().index
        due = handed - held >= self.settings.compact_entries or (
            self.log.size_bytes > self.settings.compact_bytes and handed > held
        )
        if due and not self._compacting and not self._streams:
            self._compacting = True
            meta = SnapshotMeta(handed, self.log.term(handed), self.core.conf_state())
            asyncio.get_running_loop().create_task(self._compact(meta))

    async def _compact(self, meta: SnapshotMeta) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._disk, self._sync_through, meta.index)
            if meta.index > self.log.snapshot().index:  # else a newer one was installed meanwhile
                self.log.compact(meta)
        finally:
            self._compacting = False

    def _sync_through(self, index: int) -> None:
        assert self.applied >= index, (self.applied, index)
        self._publish()
        self.machine.sync()

    async def _stream_snapshot(self, message: Message) -> None:
        """Stream one read view of the state machine in chunks, as fast as the link drains, then
        the log snapshot's metadata; the view holds at least everything up to that snapshot."""
        to = message.to
        address = self._address(to)
        assert message.snapshot is not None
        ok = False
        started = time.perf_counter()
        self._streams += 1
        try:
            if address is None:
                return
            link = self.transport.link(to, address)
            with self.machine.snapshot() as view:
                assert view.index >= message.snapshot.index, (view.index, message.snapshot.index)
                offset = await self._send_view(view, link, to, address)
            if offset is None:
                return  # the stream broke; the follower will be sent a fresh one
            self.transport.send(to, address, wire.Kind.SNAPSHOT_DONE, wire.SnapshotDone(message, offset))
            ok = True
            self.observer.snapshot_sent(time.perf_counter() - started, offset)
        except OSError as exc:
            log.warning("sending a snapshot to %s failed: %s", address, exc)
        finally:
            self._streams -= 1
            self.core.report_snapshot(to, ok)
            self._kick()

    async def _send_view(self, view: SnapshotView, link: Any, to: int, address: str) -> int | None:
        """The view goes through a pipe: a thread writes it, the loop sends what arrives. Returns
        the bytes sent, or None if the link broke (closing the pipe stops the writer)."""
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()

        def write() -> None:
            try:
                view.write_to(write_end)
            finally:
                os.close(write_end)

        writer = loop.run_in_executor(None, write)
        offset = 0
        try:
            while chunk := await loop.run_in_executor(None, _read_chunk, read_end):
                if offset and not link.connected:
                    return None
                await link.room.wait()
                self.transport.send(to, address, wire.Kind.SNAPSHOT_CHUNK, wire.SnapshotChunk(offset, chunk))
                offset += len(chunk)
        finally:
            os.close(read_end)
            with contextlib.suppress(Exception):  # a writer cut off by the close above
                await writer
        await writer  # a view that could not be written whole was not sent whole
        return offset

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
        """Check the received file (the state machine opens it) before the core sees it; keep it
        if the core adopts it (a later Ready installs it), else drop it."""
        meta = message.snapshot
        assert meta is not None
        loop = asyncio.get_running_loop()
        try:
            index = await loop.run_in_executor(self._disk, self.machine.check_snapshot, received)
        except (OSError, ValueError) as exc:
            log.warning("discarded a received snapshot: %s", exc)
            index = -1
        if index >= meta.index:
            self.core.step(message)
            self._kick()
        if self.core.log.pending_snapshot != meta:
            os.unlink(received)  # unreadable, or the core had no use for it
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
            "applied_index": self.published,
            "log_length": core.log.last_index() - core.log.first_index() + 1,
            "journal_bytes": self.log.size_bytes,
            "first_log_index": self.log.first_index(),
            "has_quorum": core.leader != NONE,
            "members": members,
            "learners": sorted(a for n, a in conf.addresses if n in conf.learners),
            "member_ids": {a: n - 1 for n, a in conf.addresses},  # Raft ids start at 1, member ids at 0
            "connected": {a: self.transport.connected(n) for n, a in conf.addresses if a != me},
            "peer_errors": {a: e for n, e in self.transport.errors().items() if (a := self._address(n))},
            "match_index": {self._address(n): m for n, m in core.match_indexes().items() if n != self.id},
        }
