"""The applied-entry stream behind GET /v1/events: a bounded in-memory window, resumable by seq.

Entries arrive on the Raft thread and are handed to the event loop; subscribers wait on a
condition and read from the window. A subscriber that asks for a seq older than the window (or
from before a snapshot was installed) gets a `gap` event with the oldest seq still available.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from .machine import AppliedEntry


class EventWindow:
    def __init__(self, loop: asyncio.AbstractEventLoop, max_bytes: int = 64 << 20) -> None:
        self._loop = loop
        self._entries: deque[AppliedEntry] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._first_seq = 1  # the seq the window starts at (entries before it are gone)
        self._changed = asyncio.Event()

    # Raft thread -> loop
    def push_threadsafe(self, applied: AppliedEntry) -> None:
        self._loop.call_soon_threadsafe(self._push, applied)

    def reset_threadsafe(self, seq: int, _audit_hash: bytes) -> None:
        self._loop.call_soon_threadsafe(self._reset, seq)

    def _push(self, applied: AppliedEntry) -> None:
        if self._entries and applied.seq != self._entries[-1].seq + 1:
            self._reset(applied.seq - 1)
        if not self._entries:
            self._first_seq = applied.seq
        self._entries.append(applied)
        self._bytes += len(applied.entry)
        while self._bytes > self._max_bytes and len(self._entries) > 1:
            self._bytes -= len(self._entries.popleft().entry)
            self._first_seq += 1
        self._notify()

    def _reset(self, seq: int) -> None:
        self._entries.clear()
        self._bytes = 0
        self._first_seq = seq + 1
        self._notify()

    def _notify(self) -> None:
        # Wake every current waiter; later waiters get a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def first_seq(self) -> int:
        return self._first_seq

    def since(self, seq: int) -> list[AppliedEntry]:
        """Entries with seq > `seq` still in the window."""
        if not self._entries:
            return []
        start = max(0, seq + 1 - self._entries[0].seq)
        return [self._entries[i] for i in range(start, len(self._entries))]

    async def wait(self, timeout: float) -> None:
        """Return when the window changes, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
