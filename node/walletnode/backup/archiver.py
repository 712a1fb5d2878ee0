"""The node's side of backups: the leader archives applied entries as they come; any member takes a
base backup when asked (the operator's schedule, a WalletBackup, `walletctl backup create`).

Only the leader archives, every `every_s` seconds: what it applied since the last upload becomes
one segment (at most `segment_bytes` of entries; more segments when more is waiting). Writes never
wait for the archive: it reads published entries from the store in a thread of its own. A new
leader finds where the archive ends (one listing) and goes on from there; a deposed leader that
uploads once more writes entries the new one writes too, byte for byte the same. So the recovery
point is what was applied in the last `every_s` seconds plus one upload, measured by the
`archive_lag` figures of /v1/status.

A new archive starts at entry 1: the store keeps every entry since genesis, so even a ledger that
turns archiving on late (or was itself restored from another) archives its whole history, and a
restore without any base backup replays it from genesis. Base backups only make restores faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..ledger.store import StoredEntry
from .archive import Archive, ArchiveError, BaseManifest, BaseSource
from .objectstore import ObjectStoreError
from .retention import Expired, Policy, expired

log = logging.getLogger(__name__)


class ArchivedLedger(Protocol):
    """What the archiver reads of the node's ledger (server.machine.LedgerMachine)."""

    def entries(self, after: int, limit: int) -> list[StoredEntry]: ...

    def snapshot(self) -> contextlib.AbstractContextManager[BaseSource]: ...


class Archiver:
    def __init__(
        self,
        archive: Archive,
        ledger: ArchivedLedger,
        is_leader: Callable[[], bool],
        member: str,
        every_s: float = 2.0,
        segment_bytes: int = 4 << 20,
    ) -> None:
        self.archive = archive
        self.ledger = ledger
        self.is_leader = is_leader
        self.member = member
        self.every_s = every_s
        self.segment_bytes = segment_bytes
        #: The last entry known to be in the archive (None: not looked yet, or no longer leading).
        self.archived: int | None = None
        self.archived_at = 0.0  # unix time of the last segment uploaded
        self.error: str | None = None  # why the last attempt failed, until one succeeds
        self.last_base: BaseManifest | None = None
        self._base_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="archive")

    def status(self, applied_seq: int) -> dict[str, Any]:
        return {
            "archiving": self.archived is not None,
            "archived_seq": self.archived,
            "lag_entries": None if self.archived is None else max(0, applied_seq - self.archived),
            "last_upload_age_s": round(time.time() - self.archived_at, 3) if self.archived_at else None,
            "error": self.error,
            "last_base_backup": None if self.last_base is None else self.last_base.name,
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.every_s)
            if not self.is_leader():
                self.archived = None
                continue
            try:
                await loop.run_in_executor(self._pool, self.archive_now)
            except (ObjectStoreError, ArchiveError) as exc:
                if str(exc) != self.error:
                    log.warning("archiving failed (writes go on; retrying every %.1fs): %s", self.every_s, exc)
                self.error = str(exc)
                self.archived = None  # look again where the archive ends
            else:
                if self.error is not None:
                    log.info("archiving works again")
                self.error = None

    def archive_now(self) -> int:
        """Upload what was applied since the last upload; returns the last entry archived."""
        if self.archived is None:
            self.archive.claim()
            bases = self.archive.bases()
            self.archived = max(self.archive.last_archived(), max((b.seq for b in bases), default=0))
        while True:
            batch: list[StoredEntry] = []
            size = 0
            while size < self.segment_bytes:
                more = self.ledger.entries(self.archived + len(batch), 256)
                if not more:
                    break
                batch += more
                size += sum(len(e.data) for e in more)
            if not batch:
                return self.archived
            segment = self.archive.put_segment(batch)
            self.archived, self.archived_at = segment.last, time.time()

    def base_backup(self, policy: Policy | None = None) -> tuple[BaseManifest, Expired | None]:
        """Upload one consistent view of this member's store (one at a time); then, given a
        retention policy, delete what it lets go (retention.py: never what a kept base needs)."""
        if not self._base_lock.acquire(blocking=False):
            raise ArchiveError("a base backup is being taken on this member already")
        try:
            with self.ledger.snapshot() as view:
                manifest = self.archive.put_base(view, self.member)
            self.last_base = manifest
            log.info(
                "base backup %s: entry %d, %d bytes (%d compressed) in %.1fs",
                manifest.name,
                manifest.seq,
                manifest.store_bytes,
                manifest.object_bytes,
                manifest.finished - manifest.started,
            )
            if policy is None:
                return manifest, None
            gone = expired(self.archive.bases(), self.archive.segments(), policy, time.time())
            self.archive.delete(gone.bases, gone.segments)
            if gone.bases or gone.segments:
                log.info("retention deleted %d base backups and %d segments", len(gone.bases), len(gone.segments))
            return manifest, gone
        finally:
            self._base_lock.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
