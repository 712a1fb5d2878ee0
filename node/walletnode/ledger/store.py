"""What the ledger reads and writes, as a typed interface, and the in-memory reference store.

`Ledger` (state.py) holds no state of its own: everything lives behind `LedgerStore`, so the same
rules run over `DictStore` (the reference the property tests use) and over the node's on-disk
store (`walletnode.server.lmdb_store`). A store only keeps what it is told; every rule is in the
ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import msgspec

from .codes import Code
from .commands import GENESIS, Command, Entry


class Applied(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A command that became part of the ledger, and the entry sequence number that applied it."""

    seq: int
    command: Command


class Rejected(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A command whose first result was a failure: that result is final for its id."""

    code: Code
    command: Command


class StoredEntry(msgspec.Struct, frozen=True, gc=False):
    """An applied ledger entry as the event stream serves it: its bytes, the audit hash after it
    and one result per command."""

    seq: int
    audit_hash: bytes
    data: bytes
    results: list[Code]


class LedgerStore(Protocol):
    """The ledger's state. Writes made while applying one entry are one atomic unit for readers
    (the caller's transaction); a store validates nothing."""

    def head(self) -> tuple[int, bytes]:
        """(number of entries applied, audit hash after the last one)."""
        ...

    def append_entry(self, seq: int, audit_hash: bytes, data: bytes, entry: Entry) -> None:
        """Entry `seq` is being applied: keep its bytes and make (seq, audit_hash) the head."""
        ...

    def set_results(self, seq: int, results: list[Code]) -> None: ...

    def entry(self, seq: int) -> StoredEntry | None: ...

    def minters(self) -> frozenset[str]: ...

    def set_minters(self, minters: frozenset[str]) -> None: ...

    def currencies(self) -> dict[str, int]:
        """code -> scale (a handful, declared by minters)."""
        ...

    def scale(self, code: str) -> int | None: ...

    def supply(self, code: str) -> int: ...

    def set_currency(self, code: str, scale: int, supply: int) -> None: ...

    def balance(self, account: str, currency: str) -> int: ...

    def set_balance(self, account: str, currency: str, amount: int) -> None: ...

    def wallet(self, account: str) -> dict[str, int]:
        """Every balance the account ever held (zeros included)."""
        ...

    def balances(self) -> Iterator[tuple[str, str, int]]:
        """Every (account, currency, amount), for invariant checks."""
        ...

    def judged(self, command_id: str) -> Applied | Rejected | None: ...

    def record(self, command: Command, seq: int, position: int, code: Code) -> None:
        """The first result of `command`, the `position`th command of entry `seq`."""
        ...

    def append_history(self, account: str, command_id: str) -> None:
        """The command being applied joins the account's history (its `record` follows)."""
        ...

    def history(self, account: str, after: int, limit: int) -> list[str]:
        """Ids of the account's mints and transfers, oldest first, from position `after`."""
        ...

    def history_length(self, account: str) -> int: ...


class DictStore:
    """`LedgerStore` in dicts: the reference model (memory grows with history; tests only)."""

    def __init__(self) -> None:
        self._head = (0, GENESIS)
        self._entries: dict[int, StoredEntry] = {}
        self._minters: frozenset[str] = frozenset()
        self._currencies: dict[str, tuple[int, int]] = {}
        self._balances: dict[tuple[str, str], int] = {}
        self._judged: dict[str, Applied | Rejected] = {}
        self._history: dict[str, list[str]] = {}

    def head(self) -> tuple[int, bytes]:
        return self._head

    def append_entry(self, seq: int, audit_hash: bytes, data: bytes, entry: Entry) -> None:
        self._head = (seq, audit_hash)
        self._entries[seq] = StoredEntry(seq, audit_hash, data, [])

    def set_results(self, seq: int, results: list[Code]) -> None:
        self._entries[seq] = msgspec.structs.replace(self._entries[seq], results=results)

    def entry(self, seq: int) -> StoredEntry | None:
        return self._entries.get(seq)

    def minters(self) -> frozenset[str]:
        return self._minters

    def set_minters(self, minters: frozenset[str]) -> None:
        self._minters = minters

    def currencies(self) -> dict[str, int]:
        return {code: scale for code, (scale, _) in self._currencies.items()}

    def scale(self, code: str) -> int | None:
        known = self._currencies.get(code)
        return None if known is None else known[0]

    def supply(self, code: str) -> int:
        return self._currencies[code][1]

    def set_currency(self, code: str, scale: int, supply: int) -> None:
        self._currencies[code] = (scale, supply)

    def balance(self, account: str, currency: str) -> int:
        return self._balances.get((account, currency), 0)

    def set_balance(self, account: str, currency: str, amount: int) -> None:
        self._balances[account, currency] = amount

    def wallet(self, account: str) -> dict[str, int]:
        return {cur: amount for (acc, cur), amount in sorted(self._balances.items()) if acc == account}

    def judged(self, command_id: str) -> Applied | Rejected | None:
        return self._judged.get(command_id)

    def record(self, command: Command, seq: int, position: int, code: Code) -> None:
        self._judged[command.id] = Applied(seq, command) if code is Code.OK else Rejected(code, command)

    def append_history(self, account: str, command_id: str) -> None:
        self._history.setdefault(account, []).append(command_id)

    def history(self, account: str, after: int, limit: int) -> list[str]:
        return self._history.get(account, [])[after : after + limit]

    def history_length(self, account: str) -> int:
        return len(self._history.get(account, ()))

    def balances(self) -> Iterator[tuple[str, str, int]]:
        for (account, currency), amount in sorted(self._balances.items()):
            yield account, currency, amount
