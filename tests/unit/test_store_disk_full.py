"""A full disk under the ledger store: the transaction being written is refused whole (DiskFull), nothing
of it is kept, readers see the state before it, and the same group applies once space returns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from walletnode.ledger.commands import CreateCurrency, Entry, Mint, encode_entry
from walletnode.ledger.signing import public_hex
from walletnode.ledger.state import configure_entry
from walletnode.server.lmdb_store import DiskFull
from walletnode.server.machine import LedgerMachine

from .full_disk import fill, tmpfs

PK = public_hex(SigningKey(bytes([9]) * 32))
SIG = "0" * 128


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "4m") as mount:
        yield mount


def mints(first: int, count: int) -> bytes:
    return encode_entry(
        Entry(
            commands=tuple(
                Mint(id=f"{i:032x}", minter=PK, to=f"{i:064x}", currency="USD", amount=1, signature=SIG)
                for i in range(first, first + count)
            )
        )
    )


def test_a_full_disk_refuses_the_whole_group_and_it_applies_once_space_returns(disk: Path) -> None:
    machine = LedgerMachine(str(disk / "ledger.lmdb"))
    currency = CreateCurrency(id="ff" * 16, minter=PK, code="USD", scale=0, signature=SIG)
    machine.apply([(1, encode_entry(configure_entry([PK]))), (2, encode_entry(Entry(commands=(currency,))))])
    machine.apply([(3, mints(1000, 100))])
    with machine.reading() as ledger:
        before = (ledger.seq, ledger.audit_hash, ledger.currencies())
    fill(disk)
    group: list[tuple[int, bytes | None]] = [(4, mints(10_000, 1000)), (5, None), (6, mints(20_000, 1000))]
    with pytest.raises(DiskFull):
        machine.apply(group)
    assert machine.write_error is not None and "cannot grow" in machine.write_error
    assert machine.applied_index() == 3, "nothing of the refused group is recorded"
    with machine.reading() as ledger:
        assert (ledger.seq, ledger.audit_hash, ledger.currencies()) == before
        assert ledger.applied(f"{10_000:032x}") is None
    os.unlink(disk / "filler")  # space is back
    results = machine.apply(group)
    assert results[1] is None and results[0] == ["ok"] * 1000 and results[2] == ["ok"] * 1000
    assert machine.write_error is None and machine.applied_index() == 6
    with machine.reading() as ledger:
        ledger.check_invariants()
        assert ledger.currencies()["USD"] == (0, 2100)
    machine.close()
    reopened = LedgerMachine(str(disk / "ledger.lmdb"))
    assert reopened.applied_index() == 6
    reopened.close()


def test_applied_entries_whose_publish_the_disk_refuses_are_published_once_space_returns(disk: Path) -> None:
    """The node answered these entries' proposals already: a refused commit must not lose them."""
    machine = LedgerMachine(str(disk / "ledger.lmdb"))
    currency = CreateCurrency(id="ff" * 16, minter=PK, code="USD", scale=0, signature=SIG)
    machine.apply([(1, encode_entry(configure_entry([PK]))), (2, encode_entry(Entry(commands=(currency,))))])
    assert machine.apply_unpublished([(3, mints(1000, 1000))]) == [["ok"] * 1000]
    assert machine.apply_unpublished([(4, None), (5, mints(2000, 1000))]) == [None, ["ok"] * 1000]
    with machine.reading() as ledger:
        assert ledger.seq == 2, "readers see only what is published"
    fill(disk)
    with pytest.raises(DiskFull):
        machine.publish()
    assert machine.applied_index() == 2
    with pytest.raises(DiskFull):
        machine.publish()  # tried again (the unit rebuilt) while the disk is still full
    os.unlink(disk / "filler")
    assert machine.apply_unpublished([(6, mints(3000, 10))]) == [["ok"] * 10]
    assert machine.publish() == 6
    with machine.reading() as ledger:
        ledger.check_invariants()
        assert ledger.currencies()["USD"] == (0, 2010) and ledger.seq == 5
    machine.close()
