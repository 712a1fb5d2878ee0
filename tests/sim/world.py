"""A deterministic world for the pure Raft core: nodes, a network, disks, clients and faults.

Everything that happens is an event in one queue ordered by simulated milliseconds, and every
choice comes from one `random.Random(seed)`: a seed replays exactly. Nodes do what the real node
must do with a Ready: install the snapshot, persist term and vote, append the entries, persist the
commit index, and only then send, apply and serve reads. A crash in the middle of that keeps what
was written so far (a torn tail of entries included); a crashed node loses everything in memory.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from walletnode.consensus.core import CoreConfig, RaftCore
from walletnode.consensus.messages import (
    ConfChange,
    ConfChangeKind,
    Entry,
    EntryKind,
    HardState,
    Message,
    MsgType,
    Ready,
    Role,
    SnapshotMeta,
)
from walletnode.consensus.storage import MemoryStorage, bootstrap

from .checker import History, Op, SafetyChecker, Violation, check_history

TICK_MS = 10
ELECTION_TICKS = 10
HEARTBEAT_TICKS = 2
COMPACT_AFTER = 24  # applied entries between snapshots: small, so snapshots are sent often
FAULT_PHASE_MS = 2_500
HEAL_DEADLINE_MS = 6_000  # after the faults end, the cluster must converge within this
MAX_MEMBERS = 5


@dataclass
class Disk:
    """What survives a crash: the log storage and the state machine's snapshot (writes seen)."""

    storage: MemoryStorage
    snapshot_count: int = 0
    snapshots: dict[int, int] = field(default_factory=dict)  # every snapshot taken: index -> count


@dataclass
class Node:
    id: int
    disk: Disk
    core: RaftCore
    count: int = 0  # the state machine: how many writes it has applied
    applied: int = 0
    alive: bool = True
    incarnation: int = 0
    writes: dict[int, tuple[Op, bytes]] = field(default_factory=dict)  # log index -> the write proposed there
    reads: dict[bytes, Op] = field(default_factory=dict)  # waiting for their read index
    reads_to_serve: list[tuple[int, Op]] = field(default_factory=list)  # waiting to apply up to the index
    staged: dict[tuple[int, int], int] = field(default_factory=dict)  # received snapshots: (index, term) -> count
    led_term: int = 0


@dataclass
class Params:
    """The character of one run, drawn from its seed."""

    size: int
    loss: float
    duplicate: float
    max_delay_ms: int
    reorder: bool  # False: each link delivers in order, as a TCP connection does
    crash_in_write: float
    fault_every_ms: int
    client_every_ms: int
    short_reigns: float  # chance that a new leader crashes within a few milliseconds of winning
    max_msg_bytes: int  # 1: one entry per AppendEntries
    crash_on_election: float  # chance that a new leader crashes before anyone hears of its election
    crash_on_commit: float  # chance that a leader crashes once a new commit index is on its disk, before sending
    link_reports: float  # chance that a node's transport reports its link to a crashed node as lost
    busy_state_machine: float  # chance that a Ready is taken without committed entries (applying is behind)


def draw_params(rng: random.Random) -> Params:
    """Most runs mix every fault; two in five are leader churn: five nodes whose leaders crash
    as they are elected or as they commit, over a lossy network, the ground on which logs of
    different terms interleave (Figure 8 of the Raft paper)."""
    if rng.random() < 0.4:
        return Params(
            size=5,
            loss=0.15,
            duplicate=0.0,
            max_delay_ms=5,
            reorder=False,
            crash_in_write=0.0,
            fault_every_ms=40,
            client_every_ms=3,
            short_reigns=0.0,
            max_msg_bytes=1,
            crash_on_election=0.7,
            crash_on_commit=0.5,
            link_reports=0.0,
            busy_state_machine=0.0,
        )
    return Params(
        size=rng.choice((1, 3, 3, 3, 5, 5)),
        loss=rng.choice((0.0, 0.01, 0.05, 0.15)),
        duplicate=rng.choice((0.0, 0.02, 0.1)),
        max_delay_ms=rng.choice((2, 10, 30, 80)),
        reorder=rng.random() < 0.5,
        crash_in_write=rng.choice((0.0, 0.02, 0.1)),
        fault_every_ms=rng.choice((60, 150, 400)),
        client_every_ms=rng.choice((5, 15, 40)),
        short_reigns=rng.choice((0.0, 0.0, 0.2, 0.5)),
        max_msg_bytes=rng.choice((1, 64, 4096)),
        crash_on_election=rng.choice((0.0, 0.1, 0.3)),
        crash_on_commit=rng.choice((0.0, 0.02, 0.1)),
        link_reports=rng.choice((0.0, 0.7, 1.0)),
        busy_state_machine=rng.choice((0.0, 0.2, 0.5)),
    )


class World:
    def __init__(self, seed: int, planted: frozenset[str] = frozenset()) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.params = draw_params(self.rng)
        self.planted = planted
        self.now = 0
        self.queue: list[tuple[int, int, str, Any]] = []
        self.sequence = 0
        self.blocked: set[tuple[int, int]] = set()
        self.link_clock: dict[tuple[int, int], int] = {}  # in-order links: when the last message arrives
        self.faults_on = True
        self.checker = SafetyChecker()
        self.history = History()
        self.nodes: dict[int, Node] = {}
        self.next_id = self.params.size + 1
        self.events = 0
        voters = frozenset(range(1, self.params.size + 1))
        for node_id in voters:
            self._create(node_id, Disk(MemoryStorage(*bootstrap(voters))))
        self._at(self.rng.randrange(self.params.client_every_ms) + 1, "client", None)
        self._at(self.params.fault_every_ms, "fault", None)

    # -- running ----------------------------------------------------------------------------

    def run(self) -> None:
        """Faults for FAULT_PHASE_MS, then heal everything and demand convergence; raises
        Violation on the first broken property."""
        self._run_until(FAULT_PHASE_MS)
        self._heal_all()
        deadline = FAULT_PHASE_MS + HEAL_DEADLINE_MS
        while self.now < deadline:
            self._run_until(self.now + TICK_MS * 5)
            if self._converged():
                break
        else:
            raise Violation(f"liveness: not converged {HEAL_DEADLINE_MS} ms after the faults ended; {self._describe()}")
        self._check_end()

    def _run_until(self, end: int) -> None:
        while self.queue and self.queue[0][0] <= end:
            self.now, _, kind, payload = heapq.heappop(self.queue)
            self.events += 1
            getattr(self, "_on_" + kind)(payload)
        self.now = end

    def _at(self, delay: int, kind: str, payload: Any) -> None:
        self.sequence += 1
        heapq.heappush(self.queue, (self.now + delay, self.sequence, kind, payload))

    # -- nodes ------------------------------------------------------------------------------

    def _create(self, node_id: int, disk: Disk) -> Node:
        config = CoreConfig(
            id=node_id,
            election_ticks=ELECTION_TICKS,
            heartbeat_ticks=HEARTBEAT_TICKS,
            max_msg_bytes=self.params.max_msg_bytes,
            max_inflight_msgs=4,
            planted=self.planted,
        )
        core = RaftCore(config, disk.storage, random.Random(self.rng.getrandbits(32)))
        previous = self.nodes.get(node_id)
        node = Node(node_id, disk, core, count=disk.snapshot_count, applied=disk.storage.snap.index)
        node.incarnation = previous.incarnation + 1 if previous else 0
        self.nodes[node_id] = node
        self._at(self.rng.randrange(1, TICK_MS + 1), "tick", (node_id, node.incarnation))
        return node

    def _live(self, node_id: int, incarnation: int | None = None) -> Node | None:
        node = self.nodes.get(node_id)
        if node is None or not node.alive or (incarnation is not None and node.incarnation != incarnation):
            return None
        return node

    def _crash(self, node: Node) -> None:
        node.alive = False
        for other in self.nodes.values():  # their connections to it break, now or a little later
            if other.alive and self.rng.random() < self.params.link_reports:
                self._at(1 + self.rng.randrange(TICK_MS), "unreachable", (other.id, other.incarnation, node.id))
        if self.faults_on:
            self._at(self.rng.randrange(20, 500), "restart", node.id)

    def _on_crash(self, payload: tuple[int, int]) -> None:
        node = self._live(*payload)
        if node is not None and self.faults_on:
            self._crash(node)

    def _on_unreachable(self, payload: tuple[int, int, int]) -> None:
        node_id, incarnation, lost = payload
        node = self._live(node_id, incarnation)
        if node is not None:
            node.core.report_unreachable(lost)
            self._drain(node)

    def _on_restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if not node.alive:
            self._drain(self._create(node_id, node.disk))

    def _on_tick(self, payload: tuple[int, int]) -> None:
        node = self._live(*payload)
        if node is None:
            return
        node.core.tick()
        self._at(TICK_MS, "tick", payload)
        self._drain(node)

    # -- the application's side of a Ready -------------------------------------------------

    def _drain(self, node: Node) -> None:
        # Now and then the state machine is busy: committed entries wait, nothing else does.
        busy = self.params.busy_state_machine
        while node.alive and node.core.has_ready(apply := not busy or self.rng.random() >= busy):
            self._handle(node, node.core.ready(apply))
        if node.alive:
            self.checker.saw_commit(node.core)
        if node.alive and node.core.role == Role.LEADER and node.led_term != node.core.term:
            node.led_term = node.core.term
            self.checker.saw_leader(node.core)
            if self.faults_on and self.rng.random() < self.params.short_reigns:
                self._at(1 + self.rng.randrange(2 * TICK_MS), "crash", (node.id, node.incarnation))

    def _handle(self, node: Node, ready: Ready) -> None:
        writes = ready.snapshot is not None or ready.entries or ready.hard_state is not None
        if writes and self.faults_on and self.rng.random() < self.params.crash_in_write:
            self._persist(node, ready, torn=True)
            self._crash(node)
            return
        self._persist(node, ready, torn=False)
        if self._crash_before_send(node, ready):
            return
        for message in ready.messages:
            self._send(node, message)
        for entry in ready.committed:
            self._apply(node, entry)
        for read in ready.reads:
            op = node.reads.pop(read.context, None)
            if op is not None:
                node.reads_to_serve.append((read.index, op))
        self._serve_reads(node)
        node.core.advance(ready)
        storage = node.disk.storage
        if node.applied - storage.snap.index >= COMPACT_AFTER:
            storage.compact(SnapshotMeta(node.applied, storage.term(node.applied), node.core.conf_state()))
            node.disk.snapshot_count = node.disk.snapshots[node.applied] = node.count

    def _crash_before_send(self, node: Node, ready: Ready) -> bool:
        """A leader that has decided something (its own election, a commit) and told nobody yet:
        the moments that separate what one node knows from what the cluster knows."""
        if not self.faults_on or node.core.role != Role.LEADER:
            return False
        elected = node.led_term != node.core.term
        committed = ready.hard_state is not None and ready.hard_state.commit > node.applied
        if (elected and self.rng.random() < self.params.crash_on_election) or (
            committed and self.rng.random() < self.params.crash_on_commit
        ):
            self._crash(node)
            return True
        return False

    def _persist(self, node: Node, ready: Ready, torn: bool) -> None:
        """In order: snapshot, term and vote, entries, commit index. A torn write stops at a
        random point of that sequence, within the entries too."""
        storage = node.disk.storage
        steps = 4 + len(ready.entries)
        stop = self.rng.randrange(steps) if torn else steps
        if stop == 0:
            return
        if ready.snapshot is not None:
            meta = ready.snapshot
            storage.install(meta)
            node.disk.snapshot_count = node.disk.snapshots[meta.index] = node.staged.pop((meta.index, meta.term))
            node.count = node.disk.snapshot_count
            node.applied = meta.index
            node.writes = {i: w for i, w in node.writes.items() if i > meta.index}
        if stop == 1:
            return
        hard = ready.hard_state
        if hard is not None:
            storage.hard_state = HardState(hard.term, hard.vote, storage.hard_state.commit)
        if stop == 2:
            return
        entries = ready.entries[: stop - 3]
        if entries:
            storage.append(entries)
            self.checker.saw_persisted(node.id, entries, storage.term(entries[0].index - 1))
        if stop < steps or hard is None:
            return
        storage.hard_state = hard

    def _apply(self, node: Node, entry: Entry) -> None:
        assert entry.index == node.applied + 1, (node.id, entry.index, node.applied)
        self.checker.saw_applied(node.id, entry)
        node.applied = entry.index
        if entry.kind == EntryKind.NORMAL and entry.data:
            node.count += 1
        proposed = node.writes.pop(entry.index, None)
        if proposed is not None:
            op, data = proposed
            if data == entry.data:
                op.completed = self.now
            else:
                op.failed = True  # another entry took its place: it was never committed

    def _serve_reads(self, node: Node) -> None:
        waiting = []
        for index, op in node.reads_to_serve:
            if index <= node.applied:
                op.completed, op.result = self.now, node.count
            else:
                waiting.append((index, op))
        node.reads_to_serve = waiting

    # -- network ----------------------------------------------------------------------------

    def _send(self, node: Node, message: Message) -> None:
        copies = 2 if self.faults_on and self.rng.random() < self.params.duplicate else 1
        snapshot_count = 0
        if message.snapshot is not None:  # streamed from the snapshot it names
            snapshot_count = node.disk.snapshots.get(message.snapshot.index, 0)  # 0: the founding one
        for _ in range(copies):
            if self._dropped(message.frm, message.to):
                if message.type == MsgType.SNAPSHOT:
                    self._at(TICK_MS * 5, "snapshot_status", (node.id, node.incarnation, message.to, False))
                continue
            link = (message.frm, message.to)
            delay = 1 + self.rng.randrange(self.params.max_delay_ms if self.faults_on else 5)
            if not (self.faults_on and self.params.reorder):
                delay = max(delay, self.link_clock.get(link, 0) - self.now)
                self.link_clock[link] = self.now + delay
            self._at(delay, "deliver", (message, snapshot_count))

    def _dropped(self, frm: int, to: int) -> bool:
        return (frm, to) in self.blocked or (self.faults_on and self.rng.random() < self.params.loss)

    def _on_deliver(self, payload: tuple[Message, int]) -> None:
        message, snapshot_count = payload
        node = self._live(message.to)
        if node is None or (message.frm, message.to) in self.blocked:
            if message.type == MsgType.SNAPSHOT:
                self._at(1, "snapshot_status", (message.frm, None, message.to, False))
            return
        if message.type == MsgType.SNAPSHOT:
            assert message.snapshot is not None
            node.staged[(message.snapshot.index, message.snapshot.term)] = snapshot_count
            self._at(1, "snapshot_status", (message.frm, None, message.to, True))
        node.core.step(message)
        self._drain(node)

    def _on_snapshot_status(self, payload: tuple[int, int | None, int, bool]) -> None:
        sender_id, incarnation, to, ok = payload
        node = self._live(sender_id, incarnation)
        if node is not None:
            node.core.report_snapshot(to, ok)
            self._drain(node)

    # -- clients ----------------------------------------------------------------------------

    def _on_client(self, _: None) -> None:
        if self.faults_on:
            self._at(1 + self.rng.randrange(self.params.client_every_ms), "client", None)
        node = self._pick_target()
        if node is None:
            return
        if self.rng.random() < 0.6:
            op = self.history.invoke("write", self.now)
            data = b"w%d" % op.id
            index = node.core.propose(data)
            if index is None:
                op.failed = True
            else:
                node.writes[index] = (op, data)
        else:
            op = self.history.invoke("read", self.now)
            context = b"r%d" % op.id
            if node.core.read_index(context):
                node.reads[context] = op
        self._drain(node)

    def _pick_target(self) -> Node | None:
        live = [n for n in self.nodes.values() if n.alive]
        if not live:
            return None
        leaders = [n for n in live if n.core.role == Role.LEADER]
        if leaders and self.rng.random() < 0.7:
            return self.rng.choice(leaders)
        return self.rng.choice(live)

    # -- faults -----------------------------------------------------------------------------

    def _on_fault(self, _: None) -> None:
        if not self.faults_on:
            return
        self._at(1 + self.rng.randrange(self.params.fault_every_ms * 2), "fault", None)
        choice = self.rng.random()
        ids = sorted(self.nodes)
        live = [n for n in self.nodes.values() if n.alive]
        if choice < 0.25 and live:
            leaders = [n for n in live if n.core.role == Role.LEADER]
            self._crash(self.rng.choice(leaders if leaders and self.rng.random() < 0.5 else live))
        elif choice < 0.5:
            self._partition(ids)
        elif choice < 0.65:
            self.blocked.clear()
        elif choice < 0.8:
            self._change_membership()
        else:
            leaders = [n for n in live if n.core.role == Role.LEADER]
            if leaders:
                leader = self.rng.choice(leaders)
                others = sorted(leader.core.conf.voters - {leader.id})
                if others:
                    leader.core.transfer_leadership(self.rng.choice(others))
                    self._drain(leader)

    def _partition(self, ids: list[int]) -> None:
        shape = self.rng.random()
        if shape < 0.4:  # one node cut off
            alone = self.rng.choice(ids)
            self.blocked |= {(alone, n) for n in ids if n != alone} | {(n, alone) for n in ids if n != alone}
        elif shape < 0.7:  # two sides
            side = {n for n in ids if self.rng.random() < 0.5}
            self.blocked |= {(a, b) for a in ids for b in ids if (a in side) != (b in side)}
        else:  # one direction of one link
            a, b = self.rng.sample(ids, 2) if len(ids) > 1 else (ids[0], ids[0])
            self.blocked.add((a, b))

    def _change_membership(self) -> None:
        leaders = [n for n in self.nodes.values() if n.alive and n.core.role == Role.LEADER]
        if not leaders:
            return
        leader = self.rng.choice(leaders)
        conf = leader.core.conf
        if len(conf.members) < MAX_MEMBERS and self.rng.random() < 0.5:
            new_id = self.next_id
            if leader.core.propose_conf_change(ConfChange(ConfChangeKind.ADD_LEARNER, new_id)) is not None:
                self.next_id += 1
                self._create(new_id, Disk(MemoryStorage()))
        elif len(conf.voters) > 1:
            leaving = self.rng.choice(sorted(conf.members))
            leader.core.propose_conf_change(ConfChange(ConfChangeKind.REMOVE, leaving))
        self._drain(leader)

    def _heal_all(self) -> None:
        self.faults_on = False
        self.blocked.clear()
        for node in list(self.nodes.values()):
            if not node.alive:
                self._drain(self._create(node.id, node.disk))

    # -- the end ----------------------------------------------------------------------------

    def _leader(self) -> Node | None:
        leaders = [n for n in self.nodes.values() if n.alive and n.core.role == Role.LEADER]
        return max(leaders, key=lambda n: n.core.term) if leaders else None

    def _converged(self) -> bool:
        leader = self._leader()
        if leader is None:
            return False
        log = leader.core.log
        if log.committed != log.last_index() or log.term(log.committed) != leader.core.term:
            return False
        for member in leader.core.conf.members:
            node = self.nodes[member]
            if not node.alive or node.applied != log.committed or node.core.leader != leader.id:
                return False
        return not leader.core.conf.learners

    def _check_end(self) -> None:
        leader = self._leader()
        assert leader is not None
        counts = {self.nodes[m].count for m in leader.core.conf.members}
        if len(counts) != 1:
            raise Violation(f"replicas converged to different states: {counts}")
        applied = self.checker.applied
        order = []
        for index in range(2, self.checker.max_applied + 1):  # 1 is the founding snapshot
            entry = applied[index]
            if entry.kind == EntryKind.NORMAL and entry.data:
                order.append(int(entry.data[1:]))
        if len(order) != counts.pop():
            raise Violation(f"the replicas hold {counts} writes, the applied log {len(order)}")
        check_history(self.history, order)

    def _describe(self) -> str:
        parts = []
        for node in sorted(self.nodes.values(), key=lambda n: n.id):
            core = node.core
            parts.append(
                f"{node.id}:{'up' if node.alive else 'down'} {core.role.name.lower()} t{core.term} "
                f"lead={core.leader} commit={core.log.committed} applied={node.applied} last={core.log.last_index()} "
                f"voters={sorted(core.conf.voters)} learners={sorted(core.conf.learners)}"
            )
        return "; ".join(parts)

    def summary(self) -> dict[str, int]:
        ops = self.history.ops
        return {
            "events": self.events,
            "writes_acknowledged": sum(1 for op in ops if op.kind == "write" and op.completed is not None),
            "reads_served": sum(1 for op in ops if op.kind == "read" and op.completed is not None),
            "entries": self.checker.max_applied,
            "terms": len(self.checker.leaders),
        }
