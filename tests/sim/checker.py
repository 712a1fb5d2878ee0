"""What the simulator checks: Raft's safety properties as the run goes, linearizability at the end.

Safety is checked incrementally, at the moment each property could first be broken: election
safety whenever a node leads, log matching whenever a node persists entries, leader completeness
whenever a node becomes leader, state machine safety whenever a node applies an entry.

The client workload is a log of writes with reads that return how many writes they see; Raft's
log fixes the order of the writes, so linearizability reduces to interval checks (see `check_history`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from walletnode.consensus.core import RaftCore
from walletnode.consensus.messages import Entry


class Violation(AssertionError):
    """A property of Raft or of linearizability does not hold."""


class SafetyChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> the node that led it
        self.logged: dict[tuple[int, int], tuple[bytes, int]] = {}  # (index, term) -> (data, previous term)
        self.applied: dict[int, Entry] = {}  # index -> the entry every node applies there
        self.committed: list[int] = [0, 1]  # the term of each committed entry (1: the founding snapshot)
        self.max_applied = 0

    def saw_leader(self, core: RaftCore) -> None:
        """Election safety: at most one leader per term. Leader completeness: it holds every
        entry any node has committed."""
        first = self.leaders.setdefault(core.term, core.id)
        if first != core.id:
            raise Violation(f"election safety: nodes {first} and {core.id} both led term {core.term}")
        log = core.log
        for index in range(max(2, log.first_index()), len(self.committed)):
            if log.term(index) != self.committed[index]:
                raise Violation(
                    f"leader completeness: leader {core.id} of term {core.term} lacks committed entry "
                    f"{index} (term {self.committed[index]}); it has term {log.term(index)}"
                )

    def saw_commit(self, core: RaftCore) -> None:
        """Record the terms of newly committed entries: one entry per index, ever."""
        log = core.log
        if log.committed < len(self.committed):
            term = log.term(log.committed)
            if term is not None and term != self.committed[log.committed]:
                other = self.committed[log.committed]
                raise Violation(f"node {core.id} committed {log.committed}@{term}, another {log.committed}@{other}")
            return
        while len(self.committed) <= log.committed:
            term = log.term(len(self.committed))
            if term is None:
                return  # compacted here: another node recorded it first
            self.committed.append(term)

    def saw_persisted(self, node: int, entries: list[Entry], previous_term: int) -> None:
        """Log matching: an (index, term) names one entry, preceded by one (index - 1, term)."""
        for entry in entries:
            key = (entry.index, entry.term)
            seen = self.logged.setdefault(key, (entry.data, previous_term))
            if seen != (entry.data, previous_term):
                raise Violation(
                    f"log matching: node {node} holds entry {key} with different data or predecessor "
                    f"(previous term {previous_term}, elsewhere {seen[1]})"
                )
            previous_term = entry.term

    def saw_applied(self, node: int, entry: Entry) -> None:
        """State machine safety: every node applies the same entry at an index."""
        first = self.applied.setdefault(entry.index, entry)
        if first != entry:
            raise Violation(
                f"state machine safety: node {node} applied {entry.index}@{entry.term}, "
                f"another node applied {first.index}@{first.term} there"
            )
        self.max_applied = max(self.max_applied, entry.index)


@dataclass
class Op:
    kind: str  # "write" or "read"
    id: int
    invoked: int  # simulated time
    completed: int | None = None
    result: int | None = None  # a read: how many writes it saw
    failed: bool = False  # definitely not applied (refused before any log held it)


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def invoke(self, kind: str, now: int) -> Op:
        op = Op(kind, len(self.ops) + 1, now)
        self.ops.append(op)
        return op


def check_history(history: History, write_order: list[int]) -> None:
    """Linearizability of writes and reads against the order the log gave the writes.

    `write_order` is the op id of each write, in log order (position 1 first). A read that saw
    p writes is linearizable iff every write acknowledged before it began is among the first p,
    every one of the first p began before it ended, and no read that ended before it began saw
    more than p. Every acknowledged write is in the log exactly once; refused ones never.
    """
    ops = {op.id: op for op in history.ops}
    position: dict[int, int] = {}
    for place, op_id in enumerate(write_order, 1):
        if op_id in position:
            raise Violation(f"write {op_id} applied twice (positions {position[op_id]} and {place})")
        position[op_id] = place
    writes = [op for op in history.ops if op.kind == "write"]
    for op in writes:
        if op.completed is not None and op.id not in position:
            raise Violation(f"acknowledged write {op.id} is not in the log")
        if op.failed and op.id in position:
            raise Violation(f"write {op.id} was refused, yet it is in the log at {position[op.id]}")
    # Latest start among the first p writes, for every p.
    began_by = [0]
    for op_id in write_order:
        began_by.append(max(began_by[-1], ops[op_id].invoked))
    acked = sorted((op.completed, position[op.id]) for op in writes if op.completed is not None)
    acked_times = [t for t, _ in acked]
    acked_max = []
    for _, place in acked:
        acked_max.append(max(acked_max[-1] if acked_max else 0, place))
    reads = sorted((op for op in history.ops if op.kind == "read" and op.completed is not None), key=_completed)
    read_times = [_completed(op) for op in reads]
    read_max: list[int] = []
    for op in reads:
        read_max.append(max(read_max[-1] if read_max else 0, op.result or 0))
    for op in reads:
        seen = op.result or 0
        done = _completed(op)
        if seen > len(write_order):
            raise Violation(f"read {op.id} saw {seen} writes; the log holds {len(write_order)}")
        before = bisect.bisect_left(acked_times, op.invoked)
        if before and acked_max[before - 1] > seen:
            raise Violation(
                f"stale read {op.id} at t={op.invoked}: saw {seen} writes, but write #{acked_max[before - 1]} "
                "was acknowledged before it began"
            )
        if began_by[seen] > done:
            raise Violation(f"read {op.id} saw {seen} writes, one of which began after the read ended (t={done})")
        earlier = bisect.bisect_left(read_times, op.invoked)
        if earlier and read_max[earlier - 1] > seen:
            raise Violation(f"read {op.id} saw {seen} writes after an earlier read had seen {read_max[earlier - 1]}")


def _completed(op: Op) -> int:
    assert op.completed is not None
    return op.completed
