"""Pre-vote (Raft thesis, section 9.6), which pysyncobj lacks.

Without it, a member that stopped hearing the leader (restarted, paused, or cut off from the leader
alone) calls an election at a higher term as soon as its timer runs out. The healthy leader sees
the higher term and steps down, and writes stall until someone is elected; the member itself,
being behind, usually cannot win. With it, the member first asks whether it could win: a peer
says yes only if it has not heard a leader for an election timeout itself and the asker's log is
at least as up to date as its own. Only with a majority of yeses does the real election start, so
nobody's term moves while a leader is alive and reachable by a majority.

A member can still get ahead of the leader's term (it won a pre-vote while the leader was
unreachable, and its request for votes was lost). pysyncobj ignores entries from a lower term
without a word, and with pre-vote nobody else raises the term, so leader and member would wait on
each other forever (a seeded fault schedule ended like this). As in etcd, the member answers a
stale leader with its term (STALE_TERM) and the leader steps down; the next election settles it.

`PreVote` is mixed into the pysyncobj engine (it reads the engine's private state, as the other
adapters in raft.py do). A leadership transfer skips it: there the leader itself asks for the
election.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from pysyncobj.syncobj import _RAFT_STATE

PRE_VOTE = "pre_vote"
PRE_VOTE_RESPONSE = "pre_vote_response"
STALE_TERM = "stale_term"


def log_up_to_date(candidate_last: tuple[int, int], own_last: tuple[int, int]) -> bool:
    """Raft's election restriction on (last term, last index): a later last term wins, then a longer log."""
    return candidate_last >= own_last


class PreVote:
    """Hold pysyncobj's elections back until a pre-vote is won. Call `_pre_vote_before_tick`
    before each tick, and give `_pre_vote_handle` every peer message first (it returns True if it
    took the message, False if pysyncobj should handle it)."""

    _SyncObj__raftState: int
    _SyncObj__raftCurrentTerm: int
    _SyncObj__raftLeader: Any
    _SyncObj__raftElectionDeadline: float
    _SyncObj__transferInProgress: bool
    _SyncObj__selfNode: Any
    _SyncObj__otherNodes: Any
    _SyncObj__transport: Any
    _SyncObj__conf: Any
    _SyncObj__raftLog: Any

    _pre_vote_round = 0
    _pre_vote_won = False
    _pre_vote_leader_heard_at = float("-inf")
    _pre_vote_yeses: frozenset[Any] = frozenset()

    def _pre_vote_before_tick(self) -> None:
        if self._SyncObj__raftState == _RAFT_STATE.LEADER or self._SyncObj__selfNode is None:
            return
        if self._SyncObj__raftElectionDeadline >= monotonic():
            return
        if self._pre_vote_won or self._SyncObj__transferInProgress or not self._SyncObj__otherNodes:
            self._pre_vote_won = False
            return  # pysyncobj calls the election in this tick
        if not self._SyncObj__connectedToAnyone():  # type: ignore[attr-defined]
            return
        self._SyncObj__raftElectionDeadline = monotonic() + self._SyncObj__generateRaftTimeout()  # type: ignore[attr-defined]
        self._pre_vote_round += 1
        self._pre_vote_yeses = frozenset()
        ask = {"type": PRE_VOTE, "round": self._pre_vote_round, "last": self._pre_vote_last()}
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, ask)

    def _pre_vote_handle(self, node: Any, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        term = self._SyncObj__raftCurrentTerm
        if kind == "append_entries":
            if message["term"] < term:
                self._SyncObj__transport.send(node, {"type": STALE_TERM, "term": term})
            else:  # a leader was heard
                self._pre_vote_leader_heard_at = monotonic()
                self._pre_vote_won = False
            return False  # pysyncobj handles it (and ignores it from an older term)
        if kind == STALE_TERM:
            if message["term"] > term:  # what pysyncobj does on a request for votes from a later term
                self._SyncObj__setCurrentTerm(message["term"], None)  # type: ignore[attr-defined]
                self._SyncObj__setState(_RAFT_STATE.FOLLOWER)  # type: ignore[attr-defined]
                self._SyncObj__raftLeader = None
            return True
        if kind == PRE_VOTE:
            granted = (
                self._SyncObj__raftState != _RAFT_STATE.LEADER
                and monotonic() - self._pre_vote_leader_heard_at >= self._SyncObj__conf.raftMinTimeout
                and log_up_to_date(tuple(message["last"]), self._pre_vote_last())  # type: ignore[arg-type]
            )
            self._SyncObj__transport.send(
                node, {"type": PRE_VOTE_RESPONSE, "round": message["round"], "granted": granted}
            )
            return True
        if kind != PRE_VOTE_RESPONSE:
            return False
        if message["round"] == self._pre_vote_round and message["granted"] and node in self._SyncObj__otherNodes:
            self._pre_vote_yeses |= {node}
            if len(self._pre_vote_yeses) + 1 > (len(self._SyncObj__otherNodes) + 1) / 2:
                self._pre_vote_round += 1  # later answers to this round count for nothing
                self._pre_vote_won = True
                self._SyncObj__raftElectionDeadline = 0.0
        return True

    def _pre_vote_last(self) -> tuple[int, int]:
        last = self._SyncObj__raftLog[-1]
        return (last[2], last[1])
