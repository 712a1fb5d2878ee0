"""`walletctl backup verify`: recompute the audit chain of a base backup from genesis, and of the
archived entries after it, and compare it with what the archive says."""

from __future__ import annotations

import os
import tempfile

import msgspec

from ..ledger.commands import GENESIS, chain
from ..server.lmdb_store import LmdbStore, StoreFile, StoreFormatError
from .archive import Archive, ArchiveError, BaseManifest


class Verified(msgspec.Struct, frozen=True):
    base: str
    base_seq: int
    base_audit_hash: str
    archived_entries_after: int  # entries after the base that continue its chain
    last_seq: int  # the last entry a restore from this base can reach
    audit_hash: str  # after that entry


def verify_base(archive: Archive, manifest: BaseManifest, workdir: str | None = None) -> Verified:
    """Raises ArchiveError at the first thing that is not as the archive says."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="walletctl-verify-") as tmp:
        path = os.path.join(tmp, "store.lmdb")
        archive.download_base(manifest, path)
        try:
            file = StoreFile(path, readonly=True)
        except StoreFormatError as exc:
            raise ArchiveError(f"{manifest.name}: {exc}") from exc
        try:
            with file.env.begin() as txn:
                store = LmdbStore(file, txn)
                seq, head = store.head()
                if seq != manifest.seq:
                    raise ArchiveError(f"{manifest.name} holds entries up to {seq}, its manifest says {manifest.seq}")
                audit_hash = GENESIS
                for n in range(1, seq + 1):
                    entry = store.entry(n)
                    if entry is None:
                        raise ArchiveError(f"{manifest.name} lacks entry {n}")
                    audit_hash = chain(audit_hash, entry.data)
                    if audit_hash != entry.audit_hash:
                        raise ArchiveError(f"{manifest.name}: entry {n} does not continue the audit chain")
        finally:
            file.close()
    if audit_hash != head or head.hex() != manifest.audit_hash:
        raise ArchiveError(f"{manifest.name}: the recomputed audit hash {audit_hash.hex()} is not its manifest's")
    after = 0
    last_seq, last_hash = seq, audit_hash
    for archived in archive.entries_after(seq, audit_hash):
        after += 1
        last_seq, last_hash = archived.seq, archived.audit_hash
    return Verified(manifest.name, seq, audit_hash.hex(), after, last_seq, last_hash.hex())
