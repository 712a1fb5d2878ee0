"""A follower receiving snapshot streams back to back installs the newest, whole, and keeps no
leftovers: a stream that starts while the previous one waits to be checked or installed must not
touch that one's file (a fault schedule once caught a node installing a truncated file)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from walletnode.consensus import wire
from walletnode.consensus.messages import ConfState, Message, MsgType, SnapshotMeta
from walletnode.consensus.replicator import Replicator
from walletnode.server.machine import LedgerMachine

PEERS = {1: "127.0.0.1:1", 2: "127.0.0.1:0"}
CONF = ConfState(voters=frozenset(PEERS), addresses=tuple(sorted(PEERS.items())))


def stream(replicator: Replicator, meta: SnapshotMeta, data: bytes, *, finish: bool = True) -> None:
    """What the leader (node 1) sends: the file in chunks, then the message that describes it."""
    half = len(data) // 2
    replicator.on_frame(1, wire.Kind.SNAPSHOT_CHUNK, wire.SnapshotChunk(0, data[:half]))
    if not finish:
        return
    replicator.on_frame(1, wire.Kind.SNAPSHOT_CHUNK, wire.SnapshotChunk(half, data[half:]))
    message = Message(MsgType.SNAPSHOT, to=2, frm=1, term=meta.term, snapshot=meta)
    replicator.on_frame(1, wire.Kind.SNAPSHOT_DONE, wire.SnapshotDone(message, len(data)))


def snapshot_bytes(tmp_path: Path, meta: SnapshotMeta) -> bytes:
    """A leader's store copy at `meta.index`."""
    leader = LedgerMachine(str(tmp_path / f"leader-{meta.index}.lmdb"))
    try:
        leader.apply([(index, None) for index in range(1, meta.index + 1)])
        path = tmp_path / f"copy-{meta.index}"
        with leader.snapshot() as view, open(path, "wb") as f:
            view.write_to(f.fileno())
        return path.read_bytes()
    finally:
        leader.close()


async def installed(replicator: Replicator, index: int) -> None:
    for _ in range(500):
        if replicator.applied == index and not replicator.core.log.pending_snapshot:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"applied {replicator.applied}, waiting for a snapshot at {index}")


def test_back_to_back_streams_install_the_newest_whole(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    (data_dir / "received-7.snapshot").write_bytes(b"left by a crash")
    machine = LedgerMachine(str(tmp_path / "ledger.lmdb"))
    older, newer = SnapshotMeta(50, 2, CONF), SnapshotMeta(60, 2, CONF)

    async def scenario() -> None:
        replicator = Replicator(2, "c", PEERS, False, str(data_dir), "s" * 16, machine)
        await replicator.start()
        try:
            assert not (data_dir / "received-7.snapshot").exists()
            stream(replicator, older, snapshot_bytes(tmp_path, older))
            stream(replicator, older, b"", finish=False)  # the leader starts again at once
            await installed(replicator, older.index)
            stream(replicator, newer, snapshot_bytes(tmp_path, newer))
            stream(replicator, older, snapshot_bytes(tmp_path, older))  # a late, stale copy
            await installed(replicator, newer.index)
            await asyncio.sleep(0.1)  # the stale copy is checked and dropped
        finally:
            await replicator.stop()

    try:
        asyncio.run(scenario())
        assert machine.applied_index() == newer.index
    finally:
        machine.close()
    assert [name for name in os.listdir(data_dir) if name.startswith("received-")] == []
