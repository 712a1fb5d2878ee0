"""A member refuses data it cannot read, and says what to do, instead of starting on it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import lmdb
import pytest

from walletnode.consensus.replicator import Replicator
from walletnode.server.lmdb_store import StoreFormatError
from walletnode.server.machine import LedgerMachine


def start(data_dir: Path) -> None:
    machine = LedgerMachine(str(data_dir / "ledger.lmdb"))
    replicator = Replicator(1, "c", {1: "127.0.0.1:0"}, True, str(data_dir / "raft"), "s" * 16, machine)
    try:
        asyncio.run(replicator.start())
    finally:
        machine.close()


def test_a_journal_of_the_pysyncobj_era_is_refused(tmp_path: Path) -> None:
    (tmp_path / "raft").mkdir()
    (tmp_path / "raft" / "raft.journal").write_bytes(b"WCJRNL01")
    with pytest.raises(RuntimeError, match="older walletnode.* remove the data directory"):
        start(tmp_path)


def test_a_snapshot_file_of_the_dump_era_is_refused(tmp_path: Path) -> None:
    """Before the store, the ledger's state lived in raft/ledger.snapshot: starting without it would
    lose it, so the member says to catch up from the others instead."""
    (tmp_path / "raft").mkdir()
    (tmp_path / "raft" / "ledger.snapshot").write_bytes(b"WCSNAP02" + b"\0" * 64)
    with pytest.raises(RuntimeError, match="snapshot file of an older walletnode.* remove the data directory"):
        start(tmp_path)


def test_a_store_of_another_format_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.lmdb")
    LedgerMachine(path).close()
    env = lmdb.open(path, subdir=False, max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"format", b"walletcluster-ledger/99", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StoreFormatError, match="ledger/99.*run the version that wrote it"):
        LedgerMachine(path)


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.lmdb"
    path.write_bytes(b"not an lmdb file" * 1024)
    with pytest.raises(StoreFormatError, match="not a ledger store"):
        LedgerMachine(str(path))
