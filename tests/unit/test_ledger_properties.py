"""Property tests of the pure ledger against an independent reference model."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from walletnode.ledger.codes import Code
from walletnode.ledger.commands import (
    MAX_AMOUNT,
    Command,
    CreateCurrency,
    Entry,
    Mint,
    Transfer,
    encode_entry,
)
from walletnode.ledger.signing import public_hex, sign
from walletnode.ledger.state import Ledger, configure_entry
from walletnode.server.machine import LedgerMachine
from walletnode.server.verifier import verify_commands

CLUSTER = "prop"
MINTER = SigningKey(bytes([1]) * 32)
USERS = [SigningKey(bytes([i]) * 32) for i in range(2, 6)]
KEYS = [MINTER, *USERS]
CODES = ["USD", "EUR", "JPY"]
PLACEHOLDER = "0" * 128


@dataclass
class Model:
    """The ledger's rules written the obvious way, to compare with the real thing."""

    minters: set[str]
    currencies: set[str] = field(default_factory=set)
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    supply: dict[str, int] = field(default_factory=dict)
    applied: dict[str, Command] = field(default_factory=dict)
    refused: dict[str, tuple[Command, Code]] = field(default_factory=dict)

    def run(self, c: Command, signature_ok: bool) -> Code:
        if not signature_ok:
            return Code.INVALID_SIGNATURE
        if c.id in self.applied:
            return Code.EXISTS if self.applied[c.id] == c else Code.EXISTS_WITH_DIFFERENT_FIELDS
        if c.id in self.refused:  # the first result of an id is final
            first, code = self.refused[c.id]
            return code if first == c else Code.EXISTS_WITH_DIFFERENT_FIELDS
        code = self._run(c)
        if code == Code.OK:
            self.applied[c.id] = c
        else:
            self.refused[c.id] = (c, code)
        return code

    def _run(self, c: Command) -> Code:
        if isinstance(c, CreateCurrency):
            if c.minter not in self.minters:
                return Code.NOT_A_MINTER
            if c.code in self.currencies:
                return Code.CURRENCY_EXISTS
            self.currencies.add(c.code)
            self.supply[c.code] = 0
            return Code.OK
        if isinstance(c, Mint):
            if c.minter not in self.minters:
                return Code.NOT_A_MINTER
            if c.currency not in self.currencies:
                return Code.UNKNOWN_CURRENCY
            if c.amount == 0:
                return Code.AMOUNT_MUST_BE_POSITIVE
            if self.supply[c.currency] + c.amount > MAX_AMOUNT:
                return Code.OVERFLOW
            self.supply[c.currency] += c.amount
            self.balances[c.to, c.currency] = self.balances.get((c.to, c.currency), 0) + c.amount
            return Code.OK
        if c.from_ == c.to:
            return Code.SAME_ACCOUNT
        if c.currency not in self.currencies:
            return Code.UNKNOWN_CURRENCY
        if c.amount == 0:
            return Code.AMOUNT_MUST_BE_POSITIVE
        if self.balances.get((c.from_, c.currency), 0) < c.amount:
            return Code.INSUFFICIENT_FUNDS
        self.balances[c.from_, c.currency] -= c.amount
        self.balances[c.to, c.currency] = self.balances.get((c.to, c.currency), 0) + c.amount
        return Code.OK


ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
amounts = st.one_of(st.integers(0, 3), st.integers(0, 2000), st.just(MAX_AMOUNT), st.integers(0, MAX_AMOUNT))
keys = st.sampled_from(range(len(KEYS)))
codes = st.sampled_from([*CODES, "XAU"])


@st.composite
def commands(draw: st.DrawFn) -> tuple[Command, str]:
    """A command and how it is signed: 'ok', 'other-cluster', 'wrong-key' or 'garbage'."""
    kind = draw(st.sampled_from(["create", "mint", "mint", "transfer", "transfer", "transfer", "transfer"]))
    signer = KEYS[draw(keys)]
    if kind == "create":
        command: Command = CreateCurrency(
            id=draw(ids),
            minter=public_hex(signer),
            code=draw(codes),
            scale=draw(st.integers(0, 18)),
            signature=PLACEHOLDER,
        )
    elif kind == "mint":
        command = Mint(
            id=draw(ids),
            minter=public_hex(signer),
            to=public_hex(KEYS[draw(keys)]),
            currency=draw(codes),
            amount=draw(amounts),
            signature=PLACEHOLDER,
        )
    else:
        command = Transfer(
            id=draw(ids),
            from_=public_hex(signer),
            to=public_hex(KEYS[draw(keys)]),
            currency=draw(codes),
            amount=draw(amounts),
            signature=PLACEHOLDER,
        )
    how = draw(st.sampled_from(["ok"] * 12 + ["other-cluster", "wrong-key", "garbage"]))
    if how == "garbage":
        return msgspec.structs.replace(command, signature="ab" * 64), how
    if how == "wrong-key":
        impostor = KEYS[(KEYS.index(signer) + 1) % len(KEYS)]
        return msgspec.structs.replace(command, signature=sign(impostor, CLUSTER, command).signature), how
    return sign(signer, "elsewhere" if how == "other-cluster" else CLUSTER, command), how


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[Command, str]]:
    """Commands, plus replays of earlier ones (same id, same or changed fields) to test idempotency."""
    history = [
        (
            sign(
                MINTER,
                CLUSTER,
                CreateCurrency(id=f"{i:032x}", minter=public_hex(MINTER), code=c, scale=2, signature=PLACEHOLDER),
            ),
            "ok",
        )
        for i, c in enumerate(CODES[: draw(st.integers(0, 3))])
    ]
    for _ in range(draw(st.integers(1, 60))):
        choice = draw(st.integers(0, 9))
        if history and choice == 0:
            history.append(history[draw(st.integers(0, len(history) - 1))])
        elif history and choice == 1:
            original, _ = history[draw(st.integers(0, len(history) - 1))]
            changed = _change(original)
            signer = next(k for k in KEYS if public_hex(k) == changed.signer())
            history.append((sign(signer, CLUSTER, changed), "ok"))
        else:
            history.append(draw(commands()))
    return history


def _change(c: Command) -> Command:
    if isinstance(c, CreateCurrency):
        return msgspec.structs.replace(c, scale=(c.scale + 1) % 19)
    return msgspec.structs.replace(c, amount=(c.amount + 1) % (MAX_AMOUNT + 1))


def submit(ledger: Ledger, batch: list[Command]) -> list[Code]:
    """What a node does: verify at ingress, then apply the verified ones as one entry."""
    ok = verify_commands(CLUSTER, batch)
    applied = iter(
        ledger.apply_entry_bytes(encode_entry(Entry(commands=tuple(c for c, g in zip(batch, ok, strict=True) if g))))
    )
    return [next(applied) if good else Code.INVALID_SIGNATURE for good in ok]


def fresh_ledger() -> Ledger:
    ledger = Ledger()
    ledger.apply_entry_bytes(encode_entry(configure_entry([public_hex(MINTER)])))
    return ledger


@settings(max_examples=150, deadline=None)
@given(histories(), st.integers(1, 7))
def test_ledger_matches_model_and_keeps_invariants(history: list[tuple[Command, str]], batch_size: int) -> None:
    ledger, model = fresh_ledger(), Model({public_hex(MINTER)})
    for start in range(0, len(history), batch_size):
        batch = [c for c, _ in history[start : start + batch_size]]
        got = submit(ledger, batch)
        expected = [model.run(c, how == "ok") for c, how in history[start : start + batch_size]]
        assert got == expected
        ledger.check_invariants()
    for (account, currency), amount in model.balances.items():
        assert ledger.balance(account, currency) == amount
    for command_id, command in model.applied.items():
        applied = ledger.applied(command_id)
        assert applied is not None and applied.command == command
        assert verify_commands(CLUSTER, [applied.command]) == [True], "an applied command must carry a valid signature"


@settings(max_examples=60, deadline=None)
@given(histories(), st.integers(1, 5), st.sampled_from([1, 2, 16_384]))
def test_the_store_on_disk_reaches_the_reference_state(
    history: list[tuple[Command, str]], batch_size: int, writer_rows: int
) -> None:
    """The same entries over the dict reference store and over LMDB (one write transaction per
    group, as a node applies them, keeping at most `writer_rows` decoded account rows between
    them): the same results, audit hash, balances, judged ids, history and stored entries."""
    reference = fresh_ledger()
    with tempfile.TemporaryDirectory() as tmp:
        machine = LedgerMachine(os.path.join(tmp, "ledger.lmdb"), writer_rows=writer_rows)
        entries = [encode_entry(configure_entry([public_hex(MINTER)]))]
        entries += [
            encode_entry(Entry(commands=tuple(c for c, how in history[i : i + batch_size] if how == "ok")))
            for i in range(0, len(history), batch_size)
        ]
        expected = [None, *(reference.apply_entry_bytes(e) for e in entries[1:])]
        group = [(i + 1, e) for i, e in enumerate(entries)]
        got = [r for start in range(0, len(group), 3) for r in machine.apply(group[start : start + 3])]
        assert got[1:] == expected[1:]
        assert machine.apply(group[-2:]) == [None, None], "an entry at or below the stored index is skipped"
        assert machine.applied_index() == len(entries)
        with machine.reading() as on_disk:
            on_disk.check_invariants()
            assert (on_disk.seq, on_disk.audit_hash) == (reference.seq, reference.audit_hash)
            assert on_disk.minters == reference.minters
            assert on_disk.currencies() == reference.currencies()
            assert list(on_disk.store.balances()) == list(reference.store.balances())
            for c, _ in history:
                assert on_disk.applied(c.id) == reference.applied(c.id)
                assert on_disk.rejected(c.id) == reference.rejected(c.id)
            for key in KEYS:
                account = public_hex(key)
                assert on_disk.wallet(account) == reference.wallet(account)
                assert on_disk.history_length(account) == reference.history_length(account)
                assert on_disk.account_history(account, 1, 3) == reference.account_history(account, 1, 3)
            for seq in range(1, reference.seq + 2):
                assert on_disk.store.entry(seq) == reference.store.entry(seq)
        machine.close()


@settings(max_examples=80, deadline=None)
@given(commands())
def test_no_money_without_a_minter(item: tuple[Command, str]) -> None:
    command, _ = item
    ledger = fresh_ledger()
    submit(
        ledger,
        [
            sign(
                MINTER,
                CLUSTER,
                CreateCurrency(id="ff" * 16, minter=public_hex(MINTER), code="USD", scale=2, signature=PLACEHOLDER),
            )
        ],
    )
    if isinstance(command, Mint) and command.minter != public_hex(MINTER):
        assert submit(ledger, [sign(KEYS[[public_hex(k) for k in KEYS].index(command.minter)], CLUSTER, command)]) == [
            Code.NOT_A_MINTER
        ]
        assert ledger.currencies()["USD"] == (2, 0)


def test_unknown_account_has_zero_balance() -> None:
    ledger = fresh_ledger()
    assert ledger.balance("ab" * 32, "USD") == 0
    assert ledger.wallet("ab" * 32) == {}


def test_minting_past_the_largest_amount_is_overflow() -> None:
    ledger = fresh_ledger()
    pk, to = public_hex(MINTER), public_hex(USERS[0])

    def run(c: Command) -> list[Code]:
        return submit(ledger, [sign(MINTER, CLUSTER, c)])

    assert run(CreateCurrency(id="01" * 16, minter=pk, code="USD", scale=2, signature=PLACEHOLDER)) == [Code.OK]
    assert run(Mint(id="02" * 16, minter=pk, to=to, currency="USD", amount=MAX_AMOUNT, signature=PLACEHOLDER)) == [
        Code.OK
    ]
    assert run(Mint(id="03" * 16, minter=pk, to=pk, currency="USD", amount=1, signature=PLACEHOLDER)) == [Code.OVERFLOW]
    assert ledger.currencies()["USD"] == (2, MAX_AMOUNT)
    ledger.check_invariants()


def test_a_rejection_is_final_for_its_id() -> None:
    """Found by the fault harness: a client retried a transfer (same id) after a timeout, the retry
    was answered insufficient_funds, and the stale first attempt applied later once funds arrived.
    The first result of an id must be final, whatever it was."""
    ledger = fresh_ledger()
    pk, alice, bob = public_hex(MINTER), USERS[0], public_hex(USERS[1])
    submit(
        ledger,
        [sign(MINTER, CLUSTER, CreateCurrency(id="01" * 16, minter=pk, code="USD", scale=2, signature=PLACEHOLDER))],
    )
    send = sign(
        alice,
        CLUSTER,
        Transfer(id="0a" * 16, from_=public_hex(alice), to=bob, currency="USD", amount=5, signature=PLACEHOLDER),
    )
    assert submit(ledger, [send]) == [Code.INSUFFICIENT_FUNDS]
    submit(
        ledger,
        [
            sign(
                MINTER,
                CLUSTER,
                Mint(id="02" * 16, minter=pk, to=public_hex(alice), currency="USD", amount=100, signature=PLACEHOLDER),
            )
        ],
    )
    assert submit(ledger, [send]) == [Code.INSUFFICIENT_FUNDS], "a late duplicate must not apply"
    assert ledger.balance(bob, "USD") == 0
    changed = sign(alice, CLUSTER, msgspec.structs.replace(send, amount=6))
    assert submit(ledger, [changed]) == [Code.EXISTS_WITH_DIFFERENT_FIELDS]


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.booleans(), min_size=0, max_size=400),
    st.integers(1, 150),
    st.lists(st.tuples(st.integers(0, 420), st.integers(0, 200)), min_size=1, max_size=30),
)
def test_history_pages_on_disk_match_the_reference(
    to_first: list[bool], per_entry: int, windows: list[tuple[int, int]]
) -> None:
    """Long histories (chains of links with checkpoints on disk, lists in the reference), paged
    from anywhere with any page size, across many entries and write transactions."""
    minter = public_hex(MINTER)
    accounts = [public_hex(USERS[0]), public_hex(USERS[1])]
    commands: list[Command] = [
        CreateCurrency(id=f"{0:032x}", minter=minter, code="USD", scale=2, signature=PLACEHOLDER)
    ]
    commands += [
        Mint(
            id=f"{i + 1:032x}",
            minter=minter,
            to=accounts[0 if first else 1],
            currency="USD",
            amount=1,
            signature=PLACEHOLDER,
        )
        for i, first in enumerate(to_first)
    ]
    entries = [encode_entry(configure_entry([minter]))]
    entries += [
        encode_entry(Entry(commands=tuple(commands[i : i + per_entry]))) for i in range(0, len(commands), per_entry)
    ]
    reference = fresh_ledger()
    for data in entries[1:]:
        reference.apply_entry_bytes(data)
    with tempfile.TemporaryDirectory() as tmp:
        machine = LedgerMachine(os.path.join(tmp, "ledger.lmdb"))
        group = [(i + 1, e) for i, e in enumerate(entries)]
        for start in range(0, len(group), 2):
            machine.apply(group[start : start + 2])
        with machine.reading() as on_disk:
            for account in accounts:
                assert on_disk.history_length(account) == reference.history_length(account)
                for after, limit in windows:
                    assert on_disk.store.history(account, after, limit) == reference.store.history(
                        account, after, limit
                    )
        machine.close()
