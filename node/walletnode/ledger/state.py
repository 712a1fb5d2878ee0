"""The ledger state machine: pure and deterministic, no I/O, no clock, no randomness.

Every replica applies the same entries in the same order and must end in the same state, so
everything here depends only on the entries. Signatures are checked before a command enters the
log (see `walletnode.ledger.signing`); the log only carries commands that verified. The state
itself lives in a `LedgerStore` (store.py): in dicts for the reference model, on disk in a node.
"""

from __future__ import annotations

from collections.abc import Iterable

from .codes import Code
from .commands import (
    MAX_AMOUNT,
    Command,
    Configure,
    CreateCurrency,
    Entry,
    Mint,
    Transfer,
    chain,
    decode_entry,
)
from .store import Applied, DictStore, LedgerStore, Rejected

__all__ = ["Applied", "Ledger", "Rejected", "configure_entry"]


class Ledger:
    """The rules: balances per (account, currency), currencies, minters, idempotency by id."""

    def __init__(self, store: LedgerStore | None = None) -> None:
        self.store: LedgerStore = DictStore() if store is None else store

    @property
    def seq(self) -> int:
        """Number of entries applied."""
        return self.store.head()[0]

    @property
    def audit_hash(self) -> bytes:
        return self.store.head()[1]

    @property
    def minters(self) -> frozenset[str]:
        return self.store.minters()

    # -- applying ---------------------------------------------------------------------------

    def apply_entry_bytes(self, data: bytes) -> list[Code]:
        """Apply one Raft entry as stored in the log; extends the audit chain."""
        entry = decode_entry(data)
        seq, audit_hash = self.store.head()
        seq += 1
        self.store.append_entry(seq, chain(audit_hash, data), data, entry)
        if entry.configure is not None:
            self.store.set_minters(frozenset(entry.configure.minters))
        results = [self._apply(command, seq, position) for position, command in enumerate(entry.commands)]
        self.store.set_results(seq, results)
        return results

    def _apply(self, command: Command, seq: int, position: int) -> Code:
        """Apply one (signature-verified) command and say what happened."""
        previous = self.store.judged(command.id)
        if isinstance(previous, Applied):
            return Code.EXISTS if previous.command == command else Code.EXISTS_WITH_DIFFERENT_FIELDS
        if previous is not None:
            return previous.code if previous.command == command else Code.EXISTS_WITH_DIFFERENT_FIELDS
        if isinstance(command, Transfer):
            code = self._transfer(command)
        elif isinstance(command, Mint):
            code = self._mint(command)
        else:
            code = self._create_currency(command)
        self.store.record(command, seq, position, code)
        return code

    def _create_currency(self, c: CreateCurrency) -> Code:
        if c.minter not in self.store.minters():
            return Code.NOT_A_MINTER
        if self.store.scale(c.code) is not None:
            return Code.CURRENCY_EXISTS
        self.store.set_currency(c.code, c.scale, 0)
        return Code.OK

    def _mint(self, c: Mint) -> Code:
        if c.minter not in self.store.minters():
            return Code.NOT_A_MINTER
        scale = self.store.scale(c.currency)
        if scale is None:
            return Code.UNKNOWN_CURRENCY
        if c.amount <= 0:
            return Code.AMOUNT_MUST_BE_POSITIVE
        supply = self.store.supply(c.currency)
        if supply + c.amount > MAX_AMOUNT:
            return Code.OVERFLOW
        self.store.set_currency(c.currency, scale, supply + c.amount)
        self._credit(c.to, c.currency, c.amount)
        self.store.append_history(c.to, c.id)
        return Code.OK

    def _transfer(self, c: Transfer) -> Code:
        if c.from_ == c.to:
            return Code.SAME_ACCOUNT
        if self.store.scale(c.currency) is None:
            return Code.UNKNOWN_CURRENCY
        if c.amount <= 0:
            return Code.AMOUNT_MUST_BE_POSITIVE
        held = self.store.balance(c.from_, c.currency)
        if held < c.amount:
            return Code.INSUFFICIENT_FUNDS
        # The receiver cannot overflow: no balance exceeds the supply, which is <= MAX_AMOUNT.
        self.store.set_balance(c.from_, c.currency, held - c.amount)
        self._credit(c.to, c.currency, c.amount)
        self.store.append_history(c.from_, c.id)
        self.store.append_history(c.to, c.id)
        return Code.OK

    def _credit(self, account: str, currency: str, amount: int) -> None:
        self.store.set_balance(account, currency, self.store.balance(account, currency) + amount)

    # -- reading ----------------------------------------------------------------------------

    def applied(self, command_id: str) -> Applied | None:
        """The command applied under this id, and where."""
        judged = self.store.judged(command_id)
        return judged if isinstance(judged, Applied) else None

    def rejected(self, command_id: str) -> Rejected | None:
        """The first, failed result of this id."""
        judged = self.store.judged(command_id)
        return judged if isinstance(judged, Rejected) else None

    def balance(self, account: str, currency: str) -> int:
        """Balance in minor units; an unknown account or currency holds 0."""
        return self.store.balance(account, currency)

    def wallet(self, account: str) -> dict[str, int]:
        """All non-zero balances of an account (empty for an unknown account)."""
        return {cur: amt for cur, amt in self.store.wallet(account).items() if amt}

    def currencies(self) -> dict[str, tuple[int, int]]:
        """code -> (scale, supply)."""
        return {code: (scale, self.store.supply(code)) for code, scale in self.store.currencies().items()}

    def account_history(self, account: str, after: int, limit: int) -> list[Applied]:
        records = (self.applied(i) for i in self.store.history(account, after, limit))
        return [r for r in records if r is not None]

    def history_length(self, account: str) -> int:
        return self.store.history_length(account)

    def check_invariants(self) -> None:
        """Raise AssertionError if money was created, destroyed or overdrawn."""
        supply = {code: s for code, (_, s) in self.currencies().items()}
        totals: dict[str, int] = dict.fromkeys(supply, 0)
        for _, currency, amount in self.store.balances():
            assert amount >= 0, f"negative balance in {currency}"
            totals[currency] += amount
        assert totals == supply, f"supply {supply} != balances {totals}"
        assert all(total <= MAX_AMOUNT for total in totals.values()), "supply beyond the representable range"


def configure_entry(minters: Iterable[str]) -> Entry:
    return Entry(configure=Configure(tuple(sorted(minters))))
