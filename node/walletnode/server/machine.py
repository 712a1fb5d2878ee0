"""The ledger as a replicated state machine: applied on the Raft thread, read by the HTTP loop.

A lock makes each entry atomic for readers (nobody sees the debit of a transfer without its
credit). Listeners hear of every applied entry, for the event stream and metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import msgspec

from ..ledger.codes import Code
from ..ledger.state import Ledger


class AppliedEntry(msgspec.Struct, frozen=True):
    seq: int
    audit_hash: bytes
    entry: bytes
    results: list[Code]
    apply_seconds: float = 0.0


Listener = Callable[[AppliedEntry], None]
RestoreListener = Callable[[int, bytes], None]


class LedgerMachine:
    def __init__(self) -> None:
        self._ledger = Ledger()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._restore_listeners: list[RestoreListener] = []

    def on_applied(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_restored(self, listener: RestoreListener) -> None:
        self._restore_listeners.append(listener)

    @contextmanager
    def reading(self) -> Iterator[Ledger]:
        """The ledger between entries; hold only briefly (the Raft thread waits meanwhile)."""
        with self._lock:
            yield self._ledger

    # -- StateMachine (Raft thread) ---------------------------------------------------------

    def apply(self, entry: bytes) -> list[Code]:
        started = time.perf_counter()
        with self._lock:
            results = self._ledger.apply_entry_bytes(entry)
            applied = AppliedEntry(
                self._ledger.seq, self._ledger.audit_hash, entry, results, time.perf_counter() - started
            )
        for listener in self._listeners:
            listener(applied)
        return results

    def dump(self) -> bytes:
        """Called on the Raft thread, the only writer, so the state is between entries without
        the lock. It also runs in a forked child, where the lock may be held by a reader thread
        that does not exist there: taking it would hang forever."""
        return self._ledger.dump()

    def restore(self, state: bytes) -> None:
        ledger = Ledger.load(state)
        with self._lock:
            self._ledger = ledger
        for listener in self._restore_listeners:
            listener(ledger.seq, ledger.audit_hash)
