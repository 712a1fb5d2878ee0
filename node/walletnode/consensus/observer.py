"""What a consensus engine reports about its own work, for metrics.

The replicator calls these hooks and knows nothing of Prometheus; the node's metrics implement
them, so dashboards and alerts do not depend on how the engine is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RaftObserver(Protocol):
    def fsynced(self, seconds: float) -> None:
        """The journal made appended entries durable; `seconds` is the fsync's duration."""

    def election_called(self, term: int) -> None:
        """This member started an election for `term`."""

    def leader_changed(self, term: int, leader: str) -> None:
        """This member now follows (or is) `leader`, another leader than the one it last knew."""

    def snapshot_sent(self, seconds: float, size: int) -> None:
        """As leader, this member finished sending a snapshot of `size` bytes to a follower."""

    def snapshot_installed(self, seconds: float, size: int) -> None:
        """This member received and loaded a snapshot of `size` bytes from the leader."""


class IgnoreAll:
    """An observer that records nothing (engines built without metrics: tests, tools)."""

    def fsynced(self, seconds: float) -> None:
        pass

    def election_called(self, term: int) -> None:
        pass

    def leader_changed(self, term: int, leader: str) -> None:
        pass

    def snapshot_sent(self, seconds: float, size: int) -> None:
        pass

    def snapshot_installed(self, seconds: float, size: int) -> None:
        pass


@dataclass
class Leadership:
    """The (term, role, leader) a member last reported: turns polled state into the hook calls."""

    term: int = 0
    role: str = "follower"
    leader: str | None = None
    known_leader: str | None = None  # the last leader known (a leaderless gap is not a change)

    def update(self, term: int, role: str, leader: str | None, observer: RaftObserver) -> bool:
        """Record the new state, call the hooks it implies, and say whether anything changed."""
        if (term, role, leader) == (self.term, self.role, self.leader):
            return False
        # Calling an election is the only way a member enters a new term as candidate or leader.
        if term > self.term and role in ("candidate", "leader"):
            observer.election_called(term)
        if leader is not None and leader != self.known_leader:
            observer.leader_changed(term, leader)
            self.known_leader = leader
        self.term, self.role, self.leader = term, role, leader
        return True
