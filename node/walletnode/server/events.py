"""What GET /v1/events waits on: the seq of the last applied entry, updated from the Raft thread.

The entries themselves are read from the store (every entry since genesis is kept there), so a
subscriber can resume from any seq after any restart and nothing is buffered in memory.
"""

from __future__ import annotations

import asyncio
import contextlib

from .machine import AppliedEntry


class EventFeed:
    def __init__(self, loop: asyncio.AbstractEventLoop, seq: int) -> None:
        self._loop = loop
        self.seq = seq  # the last entry applied
        self._changed = asyncio.Event()

    # Raft thread -> loop
    def applied_threadsafe(self, applied: AppliedEntry) -> None:
        self._loop.call_soon_threadsafe(self._advance, applied.seq)

    def restored_threadsafe(self, seq: int, _audit_hash: bytes) -> None:
        self._loop.call_soon_threadsafe(self._advance, seq)

    def _advance(self, seq: int) -> None:
        self.seq = seq
        # Wake every current waiter; later waiters get a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_past(self, seq: int, timeout: float) -> None:
        """Return once an entry after `seq` is applied, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.seq <= seq:
                    await self._changed.wait()
