"""A member refuses data it cannot read, and says what to do, instead of starting on it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from walletnode.consensus import snapshot
from walletnode.consensus.replicator import Replicator
from walletnode.server.machine import LedgerMachine


def start(data_dir: Path) -> None:
    replicator = Replicator(1, "c", {1: "127.0.0.1:0"}, True, str(data_dir), "s" * 16, LedgerMachine())
    asyncio.run(replicator.start())


def test_a_journal_of_the_pysyncobj_era_is_refused(tmp_path: Path) -> None:
    (tmp_path / "raft.journal").write_bytes(b"WCJRNL01")
    with pytest.raises(RuntimeError, match="older walletnode .* remove the data directory"):
        start(tmp_path)


def test_a_snapshot_of_another_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ledger.snapshot").write_bytes(b"WCSNAP01" + b"\0" * 64)
    with pytest.raises(snapshot.CorruptSnapshot, match="another version of walletnode"):
        start(tmp_path)
