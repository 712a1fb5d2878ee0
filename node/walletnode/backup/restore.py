"""Restore: a new member's data directory made from an archive, up to a recovery target.

The newest base backup at or before the target is downloaded (size and checksum checked), the
archived entries after it are applied up to the target, each checked against the audit chain, and
the result is checked once more: the store's audit hash at its last entry must be the archive's.
Only then is the directory made a member's: the store becomes the state of a new Raft group at
index `RESTORED_INDEX`, and the journal begins with that snapshot and the new cluster's members.

Every founding member of the new cluster is restored the same way (the same result, entry for
entry); a member added later, or wiped, is sent the store by the leader, since the new group's
log begins after `RESTORED_INDEX` and no member can replay it from an empty store.

A restored ledger is a new ledger: it must have a signing domain (cluster id) of its own, which
the store records and the node checks at every start. So a transfer signed for the source, e.g.
one the source accepted after the backup, is void on the restored ledger instead of a second
spend of the same money; its owner signs again, for the new ledger, if they still mean it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import msgspec

from ..consensus.durable import fsync_dir
from ..consensus.log_store import DiskLog
from ..consensus.messages import ConfState, HardState, SnapshotMeta
from ..server.lmdb_store import StoreFile, StoreFormatError
from ..server.machine import LedgerMachine
from .archive import Archive, ArchiveError, BaseManifest

#: The Raft index at which a restored store begins its new group. Above 1, the index at which a new
#: member's empty journal begins: a wiped member can never replay the new log onto an empty store.
RESTORED_INDEX = 2
#: Entries applied per store transaction while replaying.
REPLAY_GROUP = 512
STORE_NAME = "ledger.lmdb"


@dataclass(frozen=True)
class Target:
    """Where to stop: the last archived entry (`latest`), entry `seq`, or the last entry made at or
    before `time_ms` (unix ms)."""

    seq: int | None = None
    time_ms: int | None = None

    def describe(self) -> str:
        if self.seq is not None:
            return f"entry {self.seq}"
        if self.time_ms is not None:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time_ms / 1000))
        return "latest"


class Restored(msgspec.Struct, frozen=True):
    """What a restore made, as `walletctl restore` prints it."""

    data_dir: str
    source_cluster_id: str
    cluster_id: str
    target: str
    base: str | None
    base_seq: int
    seq: int
    audit_hash: str
    entries_replayed: int
    seconds: float


class Lineage(msgspec.Struct, frozen=True):
    """Stored in the restored store: which ledger it came from, and where it forked."""

    cluster_id: str
    source_cluster_id: str
    seq: int
    audit_hash: str
    restored_at: float


def choose_base(bases: list[BaseManifest], target: Target) -> BaseManifest | None:
    """The newest base backup not past the target (None: replay from genesis)."""
    fitting = [
        b
        for b in bases
        if (target.seq is None or b.seq <= target.seq) and (target.time_ms is None or b.entry_time_ms <= target.time_ms)
    ]
    return max(fitting, key=lambda b: (b.seq, b.started), default=None)


def holds_ledger(data_dir: str) -> bool:
    """A member's store or journal is there (a failed restore leaves neither)."""
    return any(os.path.exists(os.path.join(data_dir, name)) for name in (STORE_NAME, "raft"))


def restore(
    archive: Archive,
    data_dir: str,
    target: Target,
    cluster_id: str,
    peers: dict[int, str],
) -> Restored:
    """Make `data_dir` (empty or absent) a founding member of the new ledger `cluster_id`, whose
    Raft members are `peers` (Raft id -> address)."""
    started = time.monotonic()
    info = archive.info()
    if info is None:
        raise ArchiveError("there is no archive at this location (no ledger.json)")
    if cluster_id == info.cluster_id:
        raise ArchiveError(
            f"the restored ledger needs a cluster id (signing domain) of its own, not its source's {cluster_id!r}: "
            "otherwise transfers signed for the source could be spent again on it"
        )
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    if holds_ledger(data_dir):
        raise ArchiveError(f"{data_dir} already holds a ledger: restore only into a new one")
    working = os.path.join(data_dir, STORE_NAME + ".restoring")
    try:
        return _restore(archive, info.cluster_id, data_dir, working, target, cluster_id, peers, started)
    finally:  # a failed restore leaves nothing behind; a good one, not its lock file
        for leftover in (working, working + "-lock"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def _restore(
    archive: Archive,
    source: str,
    data_dir: str,
    working: str,
    target: Target,
    cluster_id: str,
    peers: dict[int, str],
    started: float,
) -> Restored:
    base = choose_base(archive.bases(), target)
    if base is not None:
        archive.download_base(base, working)
        try:
            StoreFile(working, readonly=True).close()
        except StoreFormatError as exc:  # a store of another format: say so, like a corrupt one
            raise ArchiveError(f"{base.name}: {exc}") from exc
    seq, audit_hash = (base.seq, bytes.fromhex(base.audit_hash)) if base is not None else (0, bytes(32))
    replayed = _replay(archive, working, seq, audit_hash, target)
    machine = LedgerMachine(working)
    try:
        with machine.reading() as ledger:
            seq, audit_hash = ledger.seq, ledger.audit_hash
    finally:
        machine.close()
    if target.seq is not None and seq != target.seq:
        raise ArchiveError(f"the archive ends at entry {seq}, before the target entry {target.seq}")
    lineage = Lineage(cluster_id, source, seq, audit_hash.hex(), time.time())
    store = StoreFile(working)
    try:
        store.become_restored(RESTORED_INDEX, cluster_id, msgspec.json.encode(lineage))
    finally:
        store.close()
    journal = os.path.join(data_dir, "raft")
    os.makedirs(journal, mode=0o700, exist_ok=True)
    log = DiskLog(os.path.join(journal, "log"))
    try:
        conf = ConfState(voters=frozenset(peers), addresses=tuple(sorted(peers.items())))
        log.bootstrap(SnapshotMeta(RESTORED_INDEX, 1, conf), HardState(term=1, commit=RESTORED_INDEX))
    finally:
        log.close()
    os.replace(working, os.path.join(data_dir, STORE_NAME))
    fsync_dir(data_dir)
    return Restored(
        data_dir=data_dir,
        source_cluster_id=source,
        cluster_id=cluster_id,
        target=target.describe(),
        base=base.name if base is not None else None,
        base_seq=base.seq if base is not None else 0,
        seq=seq,
        audit_hash=audit_hash.hex(),
        entries_replayed=replayed,
        seconds=round(time.monotonic() - started, 3),
    )


def _replay(archive: Archive, path: str, seq: int, audit_hash: bytes, target: Target) -> int:
    """Apply the archived entries after `seq` up to the target to the store at `path`; each one
    continues the audit chain (Archive.entries_after checks) and the store must agree."""
    if os.path.exists(path):
        file = StoreFile(path)
        try:
            file.rebase(0)  # the source's Raft indexes mean nothing here; replay counts from 0
        finally:
            file.close()
    machine = LedgerMachine(path)
    replayed = 0
    try:
        group: list[tuple[int, bytes]] = []
        last = None
        for entry in archive.entries_after(seq, audit_hash):
            if target.seq is not None and entry.seq > target.seq:
                break
            if target.time_ms is not None and entry.time_ms > target.time_ms:
                break
            replayed += 1
            group.append((replayed, entry.data))
            last = entry
            if len(group) == REPLAY_GROUP:
                _apply(machine, group, last.seq, last.audit_hash)
                group = []
        if group and last is not None:
            _apply(machine, group, last.seq, last.audit_hash)
    finally:
        machine.close()
    return replayed


def _apply(machine: LedgerMachine, group: list[tuple[int, bytes]], seq: int, audit_hash: bytes) -> None:
    machine.apply(group)
    with machine.reading() as ledger:
        if (ledger.seq, ledger.audit_hash) != (seq, audit_hash):
            raise ArchiveError(
                f"replaying entry {seq} gave audit hash {ledger.audit_hash.hex()} at entry {ledger.seq}, "
                f"the archive says {audit_hash.hex()}"
            )
