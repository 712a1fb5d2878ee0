"""Turning the leadership a member reports, poll by poll, into the election and leader-change hooks."""

from __future__ import annotations

from walletnode.consensus.observer import IgnoreAll, Leadership


class Heard(IgnoreAll):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str | None]] = []

    def election_called(self, term: int) -> None:
        self.calls.append(("election", term, None))

    def leader_changed(self, term: int, leader: str) -> None:
        self.calls.append(("leader", term, leader))


def test_elections_and_leader_changes_from_polled_states() -> None:
    heard, seen = Heard(), Leadership()
    polls = [
        (3, "follower", None),  # restarted at its stored term: no election of its own
        (3, "follower", "b"),
        (3, "follower", "b"),  # nothing new
        (4, "follower", None),  # b lost; someone else's election raised the term
        (5, "candidate", None),  # this member calls one
        (5, "leader", "a"),  # and wins it: one election, not two
        (6, "follower", "a"),  # a re-elected in a later term: not a different leader
        (7, "leader", "me"),  # won without being seen as candidate between two polls
    ]
    changed = [seen.update(term, role, leader, heard) for term, role, leader in polls]
    assert changed == [True, True, False, True, True, True, True, True]
    assert heard.calls == [
        ("leader", 3, "b"),
        ("election", 5, None),
        ("leader", 5, "a"),
        ("election", 7, None),
        ("leader", 7, "me"),
    ]
