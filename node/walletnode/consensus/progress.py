"""What a leader knows of each follower's log, and how much it may send it (flow control).

A follower is probed (one AppendEntries per heartbeat until one is accepted), then replicated
to (AppendEntries pipelined, up to `max_msgs` messages and `max_bytes` bytes unacknowledged), or
sent a snapshot (nothing else until that is done). This is etcd-io/raft's Progress, in small.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class State(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """The AppendEntries sent and not yet acknowledged: (last index, bytes) in order."""

    def __init__(self, max_msgs: int, max_bytes: int) -> None:
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.sent: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def add(self, last_index: int, size: int) -> None:
        assert not self.sent or self.sent[-1][0] < last_index, "inflight indexes must grow"
        self.sent.append((last_index, size))
        self.bytes += size

    def free_to(self, index: int) -> None:
        while self.sent and self.sent[0][0] <= index:
            self.bytes -= self.sent.popleft()[1]

    def full(self) -> bool:
        return len(self.sent) >= self.max_msgs or self.bytes >= self.max_bytes

    def reset(self) -> None:
        self.sent.clear()
        self.bytes = 0


class Progress:
    def __init__(self, next_index: int, max_msgs: int, max_bytes: int, learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = State.PROBE
        self.probe_sent = False  # in PROBE: wait for an answer (or a heartbeat round) first
        self.pending_snapshot = 0
        self.recent_active = False
        self.learner = learner
        self.inflights = Inflights(max_msgs, max_bytes)

    def become_probe(self) -> None:
        if self.state == State.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(State.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(State.REPLICATE)

    def become_snapshot(self, index: int) -> None:
        self._reset(State.SNAPSHOT)
        self.pending_snapshot = index

    def _reset(self, state: State) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def is_paused(self) -> bool:
        if self.state == State.PROBE:
            return self.probe_sent
        if self.state == State.REPLICATE:
            return self.inflights.full()
        return True

    def sent_entries(self, last_index: int, size: int) -> None:
        """An AppendEntries ending at `last_index` has gone out."""
        if self.state == State.REPLICATE:
            if last_index >= self.next:
                self.inflights.add(last_index, size)
                self.next = last_index + 1
        else:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower holds our log up to `index`; True if that is news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease(self, rejected: int, hint: int) -> bool:
        """The follower rejected the AppendEntries after `rejected`; its log may match up to
        `hint`. False when the rejection is stale (answers an earlier message)."""
        if self.state == State.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1)
        self.probe_sent = False
        return True
