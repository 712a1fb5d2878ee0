"""The Raft algorithm as a pure state machine, in the shape of etcd-io/raft.

Every input is a call: `tick()`, `step(message)`, `propose(data)`, `propose_conf_change(change)`,
`read_index(context)`, `transfer_leadership(node)`, `report_snapshot(node, ok)`,
`report_unreachable(node)`. Every output is data, collected in a `Ready` (see messages.py) that
the application persists, sends and applies before it calls `advance(ready)`. No I/O, clock,
threads or global randomness: time is the number of ticks, chance is the `random.Random` given.

It has pre-vote and check-quorum (a member cut off from the leader cannot depose it, and a
leader that cannot hear a majority steps down), pipelined replication with flow control by
messages and bytes, fast backtracking, snapshots (meta only: the application streams the data),
single-server membership changes with learners promoted once caught up, leadership transfer and
ReadIndex reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgspec

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
    ReadState,
    Ready,
    Role,
    entry_size,
)
from .progress import Progress, State
from .raft_log import RaftLog
from .storage import LogStorage

#: Bugs that can be planted on purpose, only to show that the simulator finds them.
PLANTED_BUGS = frozenset({"vote_not_persisted", "commit_old_term", "no_log_matching", "stale_read"})

_conf_decoder = msgspec.msgpack.Decoder(ConfChange)
_conf_encoder = msgspec.msgpack.Encoder()


def encode_conf_change(change: ConfChange) -> bytes:
    return _conf_encoder.encode(change)


def decode_conf_change(data: bytes) -> ConfChange:
    return _conf_decoder.decode(data)


@dataclass(frozen=True)
class CoreConfig:
    id: int
    election_ticks: int = 10  # a follower campaigns after [election_ticks, 2 * election_ticks) silent ticks
    heartbeat_ticks: int = 1
    max_msg_bytes: int = 1 << 20  # entries per AppendEntries (at least one)
    max_inflight_msgs: int = 64  # AppendEntries unacknowledged per follower
    max_inflight_bytes: int = 32 << 20
    max_apply_bytes: int = 64 << 20  # committed entries per Ready
    check_quorum: bool = True
    pre_vote: bool = True
    planted: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        assert self.id != NONE, "node ids start at 1"
        assert 0 < self.heartbeat_ticks < self.election_ticks
        assert self.planted <= PLANTED_BUGS, f"unknown planted bugs: {sorted(self.planted - PLANTED_BUGS)}"


class _Vote(IntEnum):
    PENDING = 0
    WON = 1
    LOST = 2


@dataclass
class _Read:
    index: int
    context: bytes
    requester: int
    acks: set[int]


class RaftCore:
    def __init__(self, config: CoreConfig, storage: LogStorage, rng: random.Random) -> None:
        self.cfg = config
        self.id = config.id
        self.rng = rng
        hard, conf = storage.initial_state()
        self.log = RaftLog(storage, hard.commit)
        self.term = hard.term
        self.vote = hard.vote
        self.conf = conf
        self.role = Role.FOLLOWER
        self.leader = NONE
        self._persisted = hard
        self._ready_out = False
        self.msgs: list[Message] = []
        self.reads: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_ticks
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.transferee = NONE
        self.pending_conf_index = 0
        self._read_queue: list[_Read] = []
        self._reads_before_commit: list[tuple[bytes, int]] = []
        self._become_follower(self.term, NONE)

    # -- inputs -----------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role == Role.LEADER:
            self._tick_leader()
        else:
            self.election_elapsed += 1
            if self._promotable() and self.election_elapsed >= self.randomized_timeout:
                self._campaign(pre=self.cfg.pre_vote)

    def propose(self, data: bytes) -> int | None:
        """Append `data` as a new entry; its index, or None when this node cannot (not the
        leader, or handing leadership over): then nothing was appended anywhere."""
        if not self._accepting():
            return None
        return self._append(EntryKind.NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> int | None:
        """One membership change at a time; None if refused (another one is not applied yet,
        not the leader, or the change would do nothing)."""
        if not self._accepting() or self.log.applied < self.pending_conf_index:
            return None
        after = self.conf.apply(change)
        if after == self.conf or not after.voters:
            return None
        index = self._append(EntryKind.CONF, encode_conf_change(change))
        self.pending_conf_index = index
        return index

    def read_index(self, context: bytes) -> bool:
        """Ask for a linearizable read named `context` (unique): a ReadState comes out in a later
        Ready once the leader has confirmed, with a heartbeat round, that it still leads.
        False when no leader is known (the read cannot be served now)."""
        if self.role == Role.LEADER:
            self._leader_read(context, self.id)
            return True
        if self.leader == NONE:
            return False
        self._send_to(MsgType.READ_INDEX, self.leader, context=context)
        return True

    def transfer_leadership(self, target: int) -> bool:
        if self.role != Role.LEADER or target == self.id or target not in self.conf.voters:
            return False
        if self.transferee != target:
            self._transfer_to(target)
        return True

    def report_snapshot(self, node: int, ok: bool) -> None:
        """The application finished streaming a snapshot to `node` (or failed to)."""
        pr = self.progress.get(node)
        if self.role != Role.LEADER or pr is None or pr.state != State.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # probe again after the next heartbeat answer

    def report_unreachable(self, node: int) -> None:
        """The transport lost its connection to `node`. A leader probes it again; a follower
        that lost its leader stops counting on it (it may grant votes) and campaigns within
        a few ticks instead of a whole election timeout: a leader that crashed is replaced
        about as fast as the others notice. If the leader is in fact alive, the others still
        hear it and refuse the pre-vote, so this cannot depose it."""
        pr = self.progress.get(node)
        if self.role == Role.LEADER and pr is not None and pr.state == State.REPLICATE:
            pr.become_probe()
        elif self.role == Role.FOLLOWER and node == self.leader != NONE:
            self.leader = NONE
            soon = self.randomized_timeout - 1 - self.rng.randrange(2 * self.cfg.heartbeat_ticks)
            self.election_elapsed = max(self.election_elapsed, soon)

    def step(self, m: Message) -> None:
        assert m.to == self.id, (m.to, self.id)
        if m.term > self.term:
            if m.type in (MsgType.VOTE, MsgType.PREVOTE) and not m.transfer and self._in_lease():
                return  # a leader was heard within the election timeout: do not let this disrupt it
            if m.type == MsgType.PREVOTE or (m.type == MsgType.PREVOTE_RESP and not m.reject):
                pass  # pre-votes are for a term nobody has entered yet
            elif m.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, NONE)
        elif m.term < self.term:
            if m.type in (MsgType.APPEND, MsgType.HEARTBEAT):
                # A deposed leader that missed the election: our term makes it step down.
                self._send_to(MsgType.APPEND_RESP, m.frm)
            elif m.type == MsgType.PREVOTE:
                self._send_to(MsgType.PREVOTE_RESP, m.frm, reject=True)
            return
        if m.type in (MsgType.VOTE, MsgType.PREVOTE):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # -- outputs ----------------------------------------------------------------------------

    def has_ready(self, apply: bool = True) -> bool:
        """`apply=False`: the application's state machine is busy; committed entries wait (votes,
        acknowledgements and persistence must not wait behind them)."""
        log = self.log
        return bool(
            self.msgs
            or self.reads
            or log.unstable
            or log.pending_snapshot is not None
            or self._hard_state() != self._persisted
            or (apply and min(log.committed, log.stable_last) > log.applied)
        )

    def ready(self, apply: bool = True) -> Ready:
        assert not self._ready_out, "advance() the previous Ready first"
        self._ready_out = True
        hard = self._hard_state()
        ready = Ready(
            hard_state=hard if hard != self._persisted else None,
            snapshot=self.log.pending_snapshot,
            entries=list(self.log.unstable),
            messages=self.msgs,
            committed=self.log.next_committed(self.cfg.max_apply_bytes) if apply else [],
            reads=self.reads,
        )
        self.msgs = []
        self.reads = []
        return ready

    def advance(self, ready: Ready) -> None:
        """The application has done everything `ready` asked."""
        assert self._ready_out
        self._ready_out = False
        if ready.hard_state is not None:
            self._persisted = ready.hard_state
        if ready.snapshot is not None:
            self.log.snapshot_installed(ready.snapshot)
        if ready.entries:
            last = ready.entries[-1]
            self.log.stable_to(last.index, last.term)
        for entry in ready.committed:
            if entry.kind == EntryKind.CONF:
                self._apply_conf_change(decode_conf_change(entry.data))
        if ready.committed:
            self.log.applied_to(ready.committed[-1].index)
        if self.role == Role.LEADER:
            own = self.progress.get(self.id)
            if own is not None:
                own.maybe_update(self.log.stable_last)
            if self._maybe_commit():
                self._broadcast_append()

    # -- status -----------------------------------------------------------------------------

    def match_indexes(self) -> dict[int, int]:
        """On a leader, how far each member's log is known to match its own."""
        if self.role != Role.LEADER:
            return {}
        return {node: pr.match for node, pr in self.progress.items()}

    def conf_state(self) -> ConfState:
        return self.conf

    # -- roles ------------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        assert term >= self.term, f"term going back from {self.term} to {term}"
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.leader = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.cfg.election_ticks + self.rng.randrange(self.cfg.election_ticks)
        self.transferee = NONE
        self.votes = {}
        self.progress = {}
        self._read_queue = []
        self._reads_before_commit = []

    def _become_follower(self, term: int, leader: int) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_leader(self) -> None:
        assert self.role == Role.CANDIDATE
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        last = self.log.last_index()
        for node in self.conf.members:
            self.progress[node] = self._new_progress(node, last + 1)
        own = self.progress.get(self.id)  # absent when it won as a removed leader (see _promotable)
        if own is not None:
            own.maybe_update(self.log.stable_last)
            own.become_replicate()
        # No membership change until everything before this term is applied (the no-op below
        # commits it), the rule that keeps single-server changes safe across leader changes.
        self.pending_conf_index = last
        self._append(EntryKind.NORMAL, b"")

    def _new_progress(self, node: int, next_index: int) -> Progress:
        pr = Progress(next_index, self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes, node in self.conf.learners)
        pr.recent_active = True
        return pr

    def _promotable(self) -> bool:
        """Voters campaign; so does a node its own log has removed, not only learners. A leader
        that removed itself can lose its leadership before handing it over, and may then hold the
        longest log: the remaining voters would refuse each other, so it must win and hand over
        (pre-vote and the leader lease keep it from disturbing a cluster that has a leader)."""
        if self.log.pending_snapshot is not None or not self.conf.voters:
            return False
        return self.id in self.conf.voters or self.id not in self.conf.learners

    def _in_lease(self) -> bool:
        return self.cfg.check_quorum and self.leader != NONE and self.election_elapsed < self.cfg.election_ticks

    def _accepting(self) -> bool:
        return self.role == Role.LEADER and self.transferee == NONE and self.id in self.conf.voters

    # -- elections --------------------------------------------------------------------------

    def _campaign(self, pre: bool, transfer: bool = False) -> None:
        if not self._promotable():
            return
        if pre:
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            vote_term, kind = self.term + 1, MsgType.PREVOTE
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.id
            vote_term, kind = self.term, MsgType.VOTE
        self.votes = {self.id: True}
        if self._poll() == _Vote.WON:  # the only voter
            self._won()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for node in sorted(self.conf.voters - {self.id}):
            self._send(
                Message(
                    kind, to=node, frm=self.id, term=vote_term, index=last_index, log_term=last_term, transfer=transfer
                )
            )

    def _won(self) -> None:
        if self.role == Role.PRE_CANDIDATE:
            self._campaign(pre=False)
        else:
            self._become_leader()

    def _poll(self) -> _Vote:
        voters = self.conf.voters
        granted = sum(1 for node, yes in self.votes.items() if yes and node in voters)
        rejected = sum(1 for node, yes in self.votes.items() if not yes and node in voters)
        quorum = len(voters) // 2 + 1
        if granted >= quorum:
            return _Vote.WON
        if rejected > len(voters) - quorum:
            return _Vote.LOST
        return _Vote.PENDING

    def _handle_vote_request(self, m: Message) -> None:
        pre = m.type == MsgType.PREVOTE
        reply = MsgType.PREVOTE_RESP if pre else MsgType.VOTE_RESP
        can_vote = self.vote == m.frm or (self.vote == NONE and self.leader == NONE) or (pre and m.term > self.term)
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(reply, to=m.frm, frm=self.id, term=m.term))
            if not pre:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(reply, to=m.frm, frm=self.id, term=self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        if m.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT):
            self._become_follower(m.term, m.frm)  # a leader of our term exists
            self._step_follower(m)
            return
        wanted = MsgType.PREVOTE_RESP if self.role == Role.PRE_CANDIDATE else MsgType.VOTE_RESP
        if m.type != wanted:
            return
        self.votes.setdefault(m.frm, not m.reject)
        result = self._poll()
        if result == _Vote.WON:
            self._won()
        elif result == _Vote.LOST:
            self._become_follower(self.term, NONE)

    # -- follower ---------------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        if m.type in (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT):
            self.election_elapsed = 0
            self.leader = m.frm
            if m.type == MsgType.APPEND:
                self._handle_append(m)
            elif m.type == MsgType.HEARTBEAT:
                # min: a member whose disk was wiped holds less than the leader last heard from it.
                self.log.commit_to(min(m.commit, self.log.last_index()))
                self._send_to(MsgType.HEARTBEAT_RESP, m.frm, context=m.context, index=self.log.last_index())
            else:
                self._handle_snapshot(m)
        elif m.type == MsgType.TIMEOUT_NOW:
            self._campaign(pre=False, transfer=True)
        elif m.type == MsgType.READ_INDEX_RESP:
            self.reads.append(ReadState(m.index, m.context))

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send_to(MsgType.APPEND_RESP, m.frm, index=log.committed)
            return
        check = "no_log_matching" not in self.cfg.planted
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries, check_match=check)
        if last_new is not None:
            self._send_to(MsgType.APPEND_RESP, m.frm, index=last_new)
            return
        hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._send_to(
            MsgType.APPEND_RESP,
            m.frm,
            index=m.index,
            reject=True,
            hint_index=hint_index,
            hint_term=hint_term,
        )

    def _handle_snapshot(self, m: Message) -> None:
        meta = m.snapshot
        assert meta is not None
        log = self.log
        if meta.index > log.committed:
            if log.match_term(meta.index, meta.term):
                log.commit_to(meta.index)  # we hold that entry already: nothing to install
            else:
                log.restore(meta)
                self.conf = meta.conf
        self._send_to(MsgType.APPEND_RESP, m.frm, index=log.committed)

    # -- leader -----------------------------------------------------------------------------

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                self._become_follower(self.term, NONE)
                return
            self.transferee = NONE  # a transfer not done within an election timeout is abandoned
            if self.id not in self.conf.voters:
                self._hand_over()
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat(self._read_queue[-1].context if self._read_queue else b"")

    def _quorum_active(self) -> bool:
        """Did a majority of voters answer since the last check? Resets the marks."""
        active = 0
        for node, pr in self.progress.items():
            if (node == self.id or pr.recent_active) and node in self.conf.voters:
                active += 1
            if node != self.id:
                pr.recent_active = False
        return active >= len(self.conf.voters) // 2 + 1

    def _step_leader(self, m: Message) -> None:
        if m.type == MsgType.READ_INDEX:
            self._leader_read(m.context, m.frm)
            return
        pr = self.progress.get(m.frm)
        if pr is None:
            return
        if m.type == MsgType.APPEND_RESP:
            pr.recent_active = True
            if m.reject:
                self._handle_reject(m, pr)
            else:
                self._handle_ack(m, pr)
        elif m.type == MsgType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if m.index < pr.match:
                # It holds less than it acknowledged: a wiped disk (or an old answer; probing
                # again costs one round). An idle leader would otherwise never send it anything.
                pr.match = m.index
                pr.become_probe()
            if pr.state == State.REPLICATE and pr.inflights.full():
                pr.inflights.free_to(pr.inflights.sent[0][0])  # let one more through: a lost message
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                self._ack_read(m.context, m.frm)
            self._maybe_promote(m.frm, pr)

    def _maybe_promote(self, node: int, pr: Progress) -> None:
        """A learner that holds every committed entry becomes a voter: adding it cost no quorum."""
        if pr.learner and pr.match >= self.log.committed:
            self.propose_conf_change(ConfChange(ConfChangeKind.PROMOTE, node))

    def _handle_reject(self, m: Message, pr: Progress) -> None:
        if m.index <= pr.match and m.hint_index < pr.match:
            # The follower no longer holds entries it acknowledged: its disk was wiped and it
            # started again empty. Replicate to it from what it has now.
            pr.match = m.hint_index
            pr.become_probe()
            self._send_append(m.frm)
            return
        hint = m.hint_index
        if m.hint_term > 0:
            hint, _ = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
        if pr.maybe_decrease(m.index, hint):
            if pr.state == State.REPLICATE:
                pr.become_probe()
            self._send_append(m.frm)

    def _handle_ack(self, m: Message, pr: Progress) -> None:
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index) and not (pr.state == State.PROBE and pr.match == m.index):
            return
        if pr.state == State.PROBE:
            pr.become_replicate()
        elif pr.state == State.SNAPSHOT:
            if pr.match < pr.pending_snapshot:
                return
            pr.become_probe()
            pr.become_replicate()
        else:
            pr.inflights.free_to(m.index)
        if self._maybe_commit():
            self._broadcast_append()
        elif was_paused:
            self._send_append(m.frm)
        while self._send_append(m.frm, send_if_empty=False):
            pass
        self._maybe_promote(m.frm, pr)
        if m.frm == self.transferee and pr.match == self.log.last_index():
            self._send_to(MsgType.TIMEOUT_NOW, m.frm)

    def _maybe_commit(self) -> bool:
        matches = sorted((pr.match for node, pr in self.progress.items() if node in self.conf.voters), reverse=True)
        if len(matches) < len(self.conf.voters) // 2 + 1:
            return False
        index = matches[len(self.conf.voters) // 2]
        if index <= self.log.committed:
            return False
        # Raft §5.4.2: only an entry of the current term is committed by counting replicas.
        if self.log.term(index) != self.term and "commit_old_term" not in self.cfg.planted:
            return False
        self.log.commit_to(index)
        if self._reads_before_commit and self.log.term(index) == self.term:
            waiting, self._reads_before_commit = self._reads_before_commit, []
            for context, requester in waiting:
                self._leader_read(context, requester)
        return True

    def _append(self, kind: EntryKind, data: bytes) -> int:
        assert self.role == Role.LEADER
        index = self.log.last_index() + 1
        self.log.append([Entry(index, self.term, kind, data)])
        self._broadcast_append()
        return index

    def _broadcast_append(self) -> None:
        for node in self.progress:
            if node != self.id:
                self._send_append(node)

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        entries = self.log.entries(pr.next, self.cfg.max_msg_bytes) if prev_term is not None else None
        if prev_term is None or entries is None:
            snapshot = self.log.storage.snapshot()
            pr.become_snapshot(snapshot.index)
            self._send_to(MsgType.SNAPSHOT, to, snapshot=snapshot)
            return True
        if not entries and not send_if_empty:
            return False
        self._send_to(
            MsgType.APPEND,
            to,
            index=prev,
            log_term=prev_term,
            entries=tuple(entries),
            commit=self.log.committed,
        )
        pr.sent_entries(entries[-1].index if entries else prev, sum(entry_size(e) for e in entries))
        return True

    def _broadcast_heartbeat(self, context: bytes) -> None:
        for node, pr in self.progress.items():
            if node != self.id:
                commit = min(pr.match, self.log.committed)
                self._send_to(MsgType.HEARTBEAT, node, commit=commit, context=context)

    def _transfer_to(self, target: int) -> None:
        """Proposals stop; the target gets TIMEOUT_NOW as soon as it holds our whole log."""
        self.transferee = target
        self.election_elapsed = 0
        if self.progress[target].match == self.log.last_index():
            self._send_to(MsgType.TIMEOUT_NOW, target)
        else:
            self._send_append(target)

    # -- reads ------------------------------------------------------------------------------

    def _leader_read(self, context: bytes, requester: int) -> None:
        if "stale_read" in self.cfg.planted:
            self._release_read(_Read(self.log.committed, context, requester, set()))
            return
        if self.log.term(self.log.committed) != self.term:
            # Our commit index may lag the cluster's until an entry of this term commits.
            self._reads_before_commit.append((context, requester))
            return
        read = _Read(self.log.committed, context, requester, {self.id})
        if self.conf.voters == {self.id}:
            self._release_read(read)
            return
        self._read_queue.append(read)
        self._broadcast_heartbeat(context)

    def _ack_read(self, context: bytes, node: int) -> None:
        for position, read in enumerate(self._read_queue):
            if read.context != context:
                continue
            read.acks.add(node)
            if len(read.acks & self.conf.voters) >= len(self.conf.voters) // 2 + 1:
                # This heartbeat round confirms every read queued before it as well.
                released, self._read_queue = self._read_queue[: position + 1], self._read_queue[position + 1 :]
                for each in released:
                    self._release_read(each)
            return

    def _release_read(self, read: _Read) -> None:
        if read.requester == self.id:
            self.reads.append(ReadState(read.index, read.context))
        else:
            self._send_to(
                MsgType.READ_INDEX_RESP,
                read.requester,
                index=read.index,
                context=read.context,
            )

    # -- membership -------------------------------------------------------------------------

    def _apply_conf_change(self, change: ConfChange) -> None:
        self.conf = self.conf.apply(change)
        if self.role != Role.LEADER:
            return
        for node in self.conf.members - self.progress.keys():
            self.progress[node] = self._new_progress(node, self.log.last_index() + 1)
        for node in self.progress.keys() - self.conf.members:
            del self.progress[node]
        for node, pr in self.progress.items():
            pr.learner = node in self.conf.learners
        if self.transferee not in self.conf.voters:
            self.transferee = NONE
        if self.id not in self.conf.voters:
            self._hand_over()
        if self._maybe_commit():
            self._broadcast_append()

    def _hand_over(self) -> None:
        """A leader that removed itself goes on leading (it refuses proposals) until the most
        up-to-date remaining voter has its whole log, then hands leadership to it. Stepping down
        at once could leave the remaining voters unable to elect anyone: the one whose vote a
        candidate needs may hold entries the candidate lacks, yet may not campaign itself."""
        voters = [node for node in self.progress if node in self.conf.voters]
        if voters and self.transferee == NONE:
            self._transfer_to(max(voters, key=lambda node: (self.progress[node].match, -node)))

    # -- plumbing ---------------------------------------------------------------------------

    def _hard_state(self) -> HardState:
        vote = self.vote
        if "vote_not_persisted" in self.cfg.planted:
            vote = self._persisted.vote if self._persisted.term == self.term else NONE
        return HardState(self.term, vote, self.log.committed)

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    def _send_to(self, kind: MsgType, to: int, **fields: Any) -> None:
        self.msgs.append(Message(kind, to=to, frm=self.id, term=self.term, **fields))
