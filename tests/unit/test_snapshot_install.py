"""Crash points of installing a received snapshot: a replica SIGKILLed at each step of receiving and
installing a leader's store copy restarts on a whole store (the old one or the new one, never a
mix), with its journal and its identity key as they were, and goes on from there."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from walletnode.consensus.log_store import DiskLog
from walletnode.consensus.messages import ConfState, HardState, SnapshotMeta
from walletnode.consensus.replicator import Replicator
from walletnode.ledger.commands import CreateCurrency, Entry, Mint, encode_entry
from walletnode.ledger.signing import public_hex, sign
from walletnode.ledger.state import configure_entry
from walletnode.server import identity
from walletnode.server.machine import LedgerMachine

MINTER = SigningKey(bytes([7]) * 32)
OLD, NEW = 10, 40  # Raft indexes of the follower's store and of the leader's copy


def entries(count: int) -> list[tuple[int, bytes | None]]:
    pk = public_hex(MINTER)
    out: list[tuple[int, bytes | None]] = [
        (1, encode_entry(configure_entry([pk]))),
        (
            2,
            encode_entry(
                Entry(
                    commands=(
                        sign(
                            MINTER,
                            "c",
                            CreateCurrency(id="00" * 16, minter=pk, code="USD", scale=2, signature="0" * 128),
                        ),
                    )
                )
            ),
        ),
    ]
    for i in range(3, count + 1):
        mint = Mint(id=f"{i:032x}", minter=pk, to=f"{i:064x}", currency="USD", amount=i, signature="0" * 128)
        out.append((i, encode_entry(Entry(commands=(sign(MINTER, "c", mint),)))))
    return out


def head(store: str) -> tuple[int, int, bytes]:
    machine = LedgerMachine(store)
    try:
        with machine.reading() as ledger:
            ledger.check_invariants()
            return machine.applied_index(), ledger.seq, ledger.audit_hash
    finally:
        machine.close()


@pytest.fixture
def replica(tmp_path: Path) -> dict[str, object]:
    """A follower's data directory (store at OLD, journal, identity key) and the leader's copy at NEW."""
    leader = LedgerMachine(str(tmp_path / "leader.lmdb"))
    leader.apply(entries(NEW))
    copy = tmp_path / "copy.lmdb"
    with leader.snapshot() as view, open(copy, "wb") as f:
        view.write_to(f.fileno())
    leader.close()
    data = tmp_path / "node"
    data.mkdir()
    key = bytes(identity.load_or_create(str(data)))
    follower = LedgerMachine(str(data / "ledger.lmdb"))
    follower.apply(entries(OLD))
    follower.close()
    log = DiskLog(str(data / "raft" / "log"))
    log.bootstrap(SnapshotMeta(1, 1, ConfState(voters=frozenset({1}))), HardState(term=1, commit=1))
    log.close()
    return {
        "data": data,
        "copy": copy,
        "key": key,
        "old": head(str(data / "ledger.lmdb")),
        "new": head(str(copy)),
    }


# Each case: the code a child runs on the replica, which SIGKILLs itself at one point of the install.
KILL = "os.kill(os.getpid(), signal.SIGKILL)"
CASES = {
    "midway through receiving": f"""
        with open(copy, "rb") as src, open(incoming, "wb") as dst:
            dst.write(src.read()[: os.path.getsize(copy) // 2])
            dst.flush()
            {KILL}
    """,
    "received whole, before the rename": f"""
        shutil.copyfile(copy, incoming)
        machine.os.replace = lambda *a: {KILL}
        m.install_snapshot(incoming)
    """,
    "after the rename, before the directory fsync": f"""
        shutil.copyfile(copy, incoming)
        machine.fsync_dir = lambda *a: {KILL}
        m.install_snapshot(incoming)
    """,
    "installed, before the journal learned of it": f"""
        shutil.copyfile(copy, incoming)
        m.install_snapshot(incoming)
        {KILL}
    """,
}
EXPECTED = {
    "midway through receiving": "old",
    "received whole, before the rename": "old",
    "after the rename, before the directory fsync": "new",
    "installed, before the journal learned of it": "new",
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_replica_killed_while_installing_a_snapshot_restarts_whole(replica: dict[str, object], case: str) -> None:
    data = replica["data"]
    assert isinstance(data, Path)
    script = textwrap.dedent(
        """
        import os, shutil, signal, sys
        from walletnode.server import machine
        copy, data = sys.argv[1], sys.argv[2]
        incoming = os.path.join(data, "raft", "incoming.snapshot")
        m = machine.LedgerMachine(os.path.join(data, "ledger.lmdb"))
        """
    ) + textwrap.dedent(CASES[case])
    child = subprocess.run([sys.executable, "-c", script, str(replica["copy"]), str(data)], capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()

    assert head(str(data / "ledger.lmdb")) == replica[EXPECTED[case]], "a whole store: the old or the new"
    assert bytes(identity.load_or_create(str(data))) == replica["key"], "the identity key is untouched"
    # The node starts on it: the half-received file is dropped, the journal opens, and the store's
    # index is at or past the journal's snapshot.
    machine = LedgerMachine(str(data / "ledger.lmdb"))
    node = Replicator(1, "c", {1: "127.0.0.1:0"}, True, str(data / "raft"), "s" * 16, machine)

    async def run() -> None:
        await node.start()
        await node.stop()

    asyncio.run(run())
    machine.close()
    assert not os.path.exists(data / "raft" / "incoming.snapshot")
    assert head(str(data / "ledger.lmdb"))[1:] == replica[EXPECTED[case]][1:]  # type: ignore[index]
