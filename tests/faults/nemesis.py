"""The nemesis: a seeded random schedule of faults, each healed before the next, all healed at the end.

A schedule is a list of `Step`s (which fault, the quiet time before it, how long it lasts, and a
number that picks its targets) drawn from `random.Random(seed)`. Fault kinds are dealt from a
shuffled deck so that a short run still covers every kind; the leader is a target more often
(it appears in more cards). Which node *is* the leader is found out when the fault starts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .clusters import FaultCluster

ELECTION_TIMEOUT_MAX_S = 1.0  # walletnode serve defaults: 500 ms minimum, twice that maximum

DECK = [
    "kill-leader",
    "kill-leader",
    "kill-node",
    "pause-leader",
    "pause-node",
    "partition-leader",
    "partition-1|2",
    "full-restart",
    "disk-full-follower",
    "partition-leader+kill-follower",
    "pause-leader+disk-full-follower",
    "cut-leader-link",
]
# Docker can only disconnect a container from its network entirely, not lose one link.
NETNS_ONLY = {"cut-leader-link"}


def deck_cards(kind: str) -> list[str]:
    return DECK if kind == "netns" else [card for card in DECK if card not in NETNS_ONLY]


@dataclass(frozen=True)
class Step:
    fault: str
    quiet_s: float  # before the fault
    duration_s: float
    pick: float  # chooses targets among candidates


class Deck:
    def __init__(self, rng: random.Random, cards: list[str]) -> None:
        self.rng, self.cards, self.pile = rng, cards, list[str]()

    def draw(self) -> str:
        if not self.pile:
            self.pile = self.cards[:]
            self.rng.shuffle(self.pile)
        return self.pile.pop()


def plan(rng: random.Random, deck: Deck, faults: int) -> list[Step]:
    steps = []
    for _ in range(faults):
        fault = deck.draw()
        if fault.startswith("pause"):
            duration = rng.uniform(1.5 * ELECTION_TIMEOUT_MAX_S, 4.0)  # longer than an election timeout
        elif fault == "full-restart":
            duration = rng.uniform(0.2, 2.0)
        else:
            duration = rng.uniform(1.5, 4.0)
        steps.append(Step(fault, round(rng.uniform(0.8, 2.0), 3), round(duration, 3), rng.random()))
    return steps


@dataclass
class Event:
    fault: str
    start: float
    end: float
    detail: str


class Nemesis:
    def __init__(self, cluster: FaultCluster, clock: Callable[[], float]) -> None:
        self.cluster = cluster
        self.clock = clock
        self.events: list[Event] = []
        self.notes: list[str] = []
        self.problems: list[str] = []  # what the faults themselves showed wrong
        self._paused: set[int] = set()
        self._filled: set[int] = set()

    def leader(self, pick: float) -> int:
        for _ in range(30):
            found = self.cluster.leader()
            if found is not None:
                return found
            time.sleep(0.1)
        return int(pick * self.cluster.size)  # no leader right now: any node

    def others(self, i: int) -> list[int]:
        return [j for j in range(self.cluster.size) if j != i]

    def run(self, steps: list[Step], stop: threading.Event | None = None) -> None:
        for step in steps:
            if stop is not None and stop.is_set():
                break
            time.sleep(step.quiet_s)
            start = self.clock()
            detail = self.inject(step)
            self.events.append(Event(step.fault, start, self.clock(), detail))

    def inject(self, step: Step) -> str:
        c, d, pick = self.cluster, step.duration_s, step.pick
        f = step.fault
        if f in ("kill-leader", "kill-node"):
            target = self.leader(pick) if f == "kill-leader" else int(pick * c.size)
            c.kill(target)
            time.sleep(d)
            c.restart(target)
            return f"SIGKILL node {target}, restarted after {d:.1f}s"
        if f in ("pause-leader", "pause-node"):
            target = self.leader(pick) if f == "pause-leader" else int(pick * c.size)
            c.pause(target)
            time.sleep(d)
            c.resume(target)
            return f"SIGSTOP node {target} for {d:.1f}s"
        if f in ("partition-leader", "partition-1|2"):
            target = self.leader(pick) if f == "partition-leader" else int(pick * c.size)
            c.partition([{target}, set(self.others(target))])
            time.sleep(d)
            c.heal_network()
            return f"partition {{{target}}} | {self.others(target)} for {d:.1f}s"
        if f == "full-restart":
            for i in range(c.size):
                c.kill(i)
            time.sleep(d)
            for i in range(c.size):
                c.restart(i)
            return f"SIGKILL all nodes, restarted after {d:.1f}s"
        if f == "disk-full-follower":
            target = self._follower(pick)
            return self._disk_full(target, d)
        if f == "partition-leader+kill-follower":
            leader = self.leader(pick)
            follower = self.others(leader)[int(pick * 2)]
            c.partition([{leader}, set(self.others(leader))])
            time.sleep(d / 3)
            c.kill(follower)
            time.sleep(d)
            c.restart(follower)
            c.heal_network()
            return f"partition {{{leader}}} | {self.others(leader)}, then SIGKILL node {follower}; {d:.1f}s"
        if f == "cut-leader-link":
            # The leader still reaches the other follower; the cut one must not depose it (pre-vote).
            leader = self.leader(pick)
            follower = self.others(leader)[int(pick * 2)]
            c.cut(leader, follower)
            time.sleep(d)
            c.heal_network()
            return f"cut the link between nodes {leader} (leader) and {follower} for {d:.1f}s"
        if f == "pause-leader+disk-full-follower":
            leader = self.leader(pick)
            follower = self.others(leader)[int(pick * 2)]
            c.pause(leader)
            try:
                detail = self._disk_full(follower, d)
            finally:
                c.resume(leader)
            return f"SIGSTOP node {leader} while {detail}"
        raise ValueError(f"unknown fault {f}")

    def _follower(self, pick: float) -> int:
        leader = self.leader(pick)
        return self.others(leader)[int(pick * 2)]

    def _disk_full(self, target: int, duration: float) -> str:
        c = self.cluster
        written = c.fill_disk(target)
        # A node that cannot write refuses writes at once, with a clear error, instead of hanging.
        answer = c.try_write(target) if c.running(target) else (0, "")
        if c.running(target) and answer != (507, "disk_full"):
            self.problems.append(f"node {target} with a full disk answered a write {answer}, not (507, 'disk_full')")
        time.sleep(duration)
        survived = c.running(target)
        c.free_disk(target)
        if not survived:
            self.notes.append(f"node {target} exited when its disk filled up (restarted)")
        elif duration > 2.5:
            # Crash it too: its files, written while the disk was full, must open cleanly.
            c.kill(target)
        c.restart(target)
        state = "kept running" if survived else "exited, restarted"
        if survived and duration > 2.5:
            state += ", then SIGKILL and restart"
        return f"disk of node {target} full ({written >> 20} MiB filler) for {duration:.1f}s: {state}"

    def heal_all(self) -> None:
        c = self.cluster
        c.heal_network()
        for i in range(c.size):
            c.resume(i)
            c.free_disk(i)
            c.restart(i)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.events]
