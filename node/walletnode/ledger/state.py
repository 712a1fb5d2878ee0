"""The ledger state machine: pure and deterministic, no I/O, no clock, no randomness.

Every replica applies the same entries in the same order and must end in the same state, so
everything here depends only on the entries. Signatures are checked before a command enters the
log (see `walletnode.ledger.signing`); the log only carries commands that verified.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

import msgspec

from .codes import Code
from .commands import (
    GENESIS,
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


class Applied(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A command that became part of the ledger, and the entry sequence number that applied it."""

    seq: int
    command: Command


class Rejected(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A command whose first result was a failure: that result is final for its id."""

    code: Code
    command: Command


A = TypeVar("A")
R = TypeVar("R")


class Snapshot(msgspec.Struct, Generic[A, R], array_like=True):
    """Everything a replica needs to resume: the serialised form of `Ledger`.

    Decoded as `Snapshot[msgspec.Raw, msgspec.Raw]`: the idempotency records stay encoded until
    one is read. Decoding (and validating every hex field of) a million of them took 12 of the
    15 seconds a replica spent installing a snapshot, while nothing else could run.
    """

    seq: int
    audit_hash: bytes
    minters: list[str]
    currencies: dict[str, int]
    supply: dict[str, int]
    balances: dict[str, dict[str, int]]
    applied: dict[str, A]
    history: dict[str, list[str]]
    rejected: dict[str, R] = {}


_applied_decoder = msgspec.msgpack.Decoder(Applied)
_rejected_decoder = msgspec.msgpack.Decoder(Rejected)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot[msgspec.Raw, msgspec.Raw])
_snapshot_encoder = msgspec.msgpack.Encoder()


class Ledger:
    """Balances per (account, currency), currencies, minters and the idempotency record."""

    def __init__(self, minters: Iterable[str] = ()) -> None:
        self.seq = 0  # number of entries applied
        self.audit_hash = GENESIS
        self.minters: frozenset[str] = frozenset(minters)
        self.currencies: dict[str, int] = {}  # code -> scale
        self.supply: dict[str, int] = {}  # code -> total minted
        self.balances: dict[str, dict[str, int]] = {}  # account -> currency -> minor units
        # command id -> the command that used it (msgpack until first read, after a restore)
        self._applied: dict[str, Applied | msgspec.Raw] = {}
        # command id -> its first, failed result. Without it a stale duplicate of a command that
        # was answered e.g. insufficient_funds could apply later, once funds arrived.
        self._rejected: dict[str, Rejected | msgspec.Raw] = {}
        self.history: dict[str, list[str]] = {}  # account -> ids of its mints and transfers

    # -- applying ---------------------------------------------------------------------------

    def apply_entry_bytes(self, data: bytes) -> list[Code]:
        """Apply one Raft entry as stored in the log; extends the audit chain."""
        entry = decode_entry(data)
        self.seq += 1
        self.audit_hash = chain(self.audit_hash, data)
        return self._apply(entry)

    def _apply(self, entry: Entry) -> list[Code]:
        if entry.configure is not None:
            self.minters = frozenset(entry.configure.minters)
        return [self.apply(command) for command in entry.commands]

    def apply(self, command: Command) -> Code:
        """Apply one (signature-verified) command and say what happened."""
        previous = self.applied(command.id)
        if previous is not None:
            same = previous.command == command
            return Code.EXISTS if same else Code.EXISTS_WITH_DIFFERENT_FIELDS
        refused = self.rejected(command.id)
        if refused is not None:
            return refused.code if refused.command == command else Code.EXISTS_WITH_DIFFERENT_FIELDS
        if isinstance(command, Transfer):
            code = self._transfer(command)
        elif isinstance(command, Mint):
            code = self._mint(command)
        else:
            code = self._create_currency(command)
        if code is Code.OK:
            self._applied[command.id] = Applied(self.seq, command)
        else:
            self._rejected[command.id] = Rejected(code, command)
        return code

    def _create_currency(self, c: CreateCurrency) -> Code:
        if c.minter not in self.minters:
            return Code.NOT_A_MINTER
        if c.code in self.currencies:
            return Code.CURRENCY_EXISTS
        self.currencies[c.code] = c.scale
        self.supply[c.code] = 0
        return Code.OK

    def _mint(self, c: Mint) -> Code:
        if c.minter not in self.minters:
            return Code.NOT_A_MINTER
        if c.currency not in self.currencies:
            return Code.UNKNOWN_CURRENCY
        if c.amount <= 0:
            return Code.AMOUNT_MUST_BE_POSITIVE
        if self.supply[c.currency] + c.amount > MAX_AMOUNT:
            return Code.OVERFLOW
        self.supply[c.currency] += c.amount
        self._credit(c.to, c.currency, c.amount)
        self._record(c.id, c.to)
        return Code.OK

    def _transfer(self, c: Transfer) -> Code:
        if c.from_ == c.to:
            return Code.SAME_ACCOUNT
        if c.currency not in self.currencies:
            return Code.UNKNOWN_CURRENCY
        if c.amount <= 0:
            return Code.AMOUNT_MUST_BE_POSITIVE
        sender = self.balances.get(c.from_)
        if sender is None or sender.get(c.currency, 0) < c.amount:
            return Code.INSUFFICIENT_FUNDS
        # The receiver cannot overflow: no balance exceeds the supply, which is <= MAX_AMOUNT.
        sender[c.currency] -= c.amount
        self._credit(c.to, c.currency, c.amount)
        self._record(c.id, c.from_, c.to)
        return Code.OK

    def _credit(self, account: str, currency: str, amount: int) -> None:
        wallet = self.balances.setdefault(account, {})
        wallet[currency] = wallet.get(currency, 0) + amount

    def _record(self, command_id: str, *accounts: str) -> None:
        for account in accounts:
            self.history.setdefault(account, []).append(command_id)

    # -- reading ----------------------------------------------------------------------------

    def applied(self, command_id: str) -> Applied | None:
        """The command applied under this id, and where."""
        record = self._applied.get(command_id)
        if isinstance(record, msgspec.Raw):
            record = self._applied[command_id] = _applied_decoder.decode(record)
        return record

    def rejected(self, command_id: str) -> Rejected | None:
        """The first, failed result of this id."""
        record = self._rejected.get(command_id)
        if isinstance(record, msgspec.Raw):
            record = self._rejected[command_id] = _rejected_decoder.decode(record)
        return record

    def balance(self, account: str, currency: str) -> int:
        """Balance in minor units; an unknown account or currency holds 0."""
        return self.balances.get(account, {}).get(currency, 0)

    def wallet(self, account: str) -> dict[str, int]:
        """All non-zero balances of an account (empty for an unknown account)."""
        return {cur: amt for cur, amt in self.balances.get(account, {}).items() if amt}

    def account_history(self, account: str, after: int, limit: int) -> list[Applied]:
        ids = self.history.get(account, [])
        return [self.applied(i) for i in ids[after : after + limit]]  # type: ignore[misc]

    def check_invariants(self) -> None:
        """Raise AssertionError if money was created, destroyed or overdrawn."""
        totals: dict[str, int] = dict.fromkeys(self.currencies, 0)
        for wallet in self.balances.values():
            for currency, amount in wallet.items():
                assert amount >= 0, f"negative balance in {currency}"
                totals[currency] += amount
        assert totals == self.supply, f"supply {self.supply} != balances {totals}"
        assert all(total <= MAX_AMOUNT for total in totals.values()), "supply beyond the representable range"

    # -- snapshots --------------------------------------------------------------------------

    def dump(self) -> bytes:
        return _snapshot_encoder.encode(
            Snapshot(
                seq=self.seq,
                audit_hash=self.audit_hash,
                minters=sorted(self.minters),
                currencies=self.currencies,
                supply=self.supply,
                balances=self.balances,
                applied=self._applied,
                history=self.history,
                rejected=self._rejected,
            )
        )

    @classmethod
    def load(cls, data: bytes) -> Ledger:
        snap = _snapshot_decoder.decode(data)
        ledger = cls(snap.minters)
        ledger.seq = snap.seq
        ledger.audit_hash = snap.audit_hash
        ledger.currencies = snap.currencies
        ledger.supply = snap.supply
        ledger.balances = snap.balances
        ledger._applied = dict(snap.applied)
        ledger.history = snap.history
        ledger._rejected = dict(snap.rejected)
        return ledger


def configure_entry(minters: Iterable[str]) -> Entry:
    return Entry(configure=Configure(tuple(sorted(minters))))
