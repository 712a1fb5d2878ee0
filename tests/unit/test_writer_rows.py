"""The writer keeps decoded account rows from one write transaction to the next: they must never
outlive the store they came from. A store replaced by a received snapshot leaves no stale row behind
(after a refused write they are dropped too: test_store_disk_full re-applies the refused group and
checks the money)."""

from __future__ import annotations

from pathlib import Path

from walletnode.ledger.commands import CreateCurrency, Entry, Mint, encode_entry
from walletnode.ledger.state import configure_entry
from walletnode.server.machine import LedgerMachine

MINTER, ALICE = "aa" * 32, "bb" * 32
SIG = "0" * 128


def entries(amounts: list[int]) -> list[tuple[int, bytes | None]]:
    """Configure, create USD, then one mint to Alice per amount (Raft indexes from 1)."""
    out = [
        configure_entry([MINTER]),
        Entry(commands=(CreateCurrency(id="00" * 16, minter=MINTER, code="USD", scale=2, signature=SIG),)),
    ]
    out += [
        Entry(commands=(Mint(id=f"{i + 1:032x}", minter=MINTER, to=ALICE, currency="USD", amount=a, signature=SIG),))
        for i, a in enumerate(amounts)
    ]
    return [(i + 1, encode_entry(e)) for i, e in enumerate(out)]


def balance(machine: LedgerMachine) -> tuple[int, int]:
    with machine.reading() as ledger:
        return ledger.balance(ALICE, "USD"), ledger.history_length(ALICE)


def test_a_received_store_replaces_the_cached_rows(tmp_path: Path) -> None:
    leader = LedgerMachine(str(tmp_path / "leader.lmdb"))
    leader.apply(entries([5, 5, 5, 5]))  # Alice: 20 in 4 mints, up to index 6
    copy = tmp_path / "copy.lmdb"
    with leader.snapshot() as view, open(copy, "wb") as f:
        view.write_to(f.fileno())
    leader.close()
    follower = LedgerMachine(str(tmp_path / "follower.lmdb"))
    follower.apply(entries([100]))  # Alice: 100 in 1 mint (her row is in the writer's cache)
    assert balance(follower) == (100, 1)
    assert follower.install_snapshot(str(copy)) == 6
    follower.apply(
        [
            (
                7,
                encode_entry(
                    Entry(
                        commands=(Mint(id="77" * 16, minter=MINTER, to=ALICE, currency="USD", amount=1, signature=SIG),)
                    )
                ),
            )
        ]
    )
    assert balance(follower) == (21, 5), "the row as the received store has it, then the new mint"
    follower.close()
