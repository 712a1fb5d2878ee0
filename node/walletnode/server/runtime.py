"""One ledger node: the replicated ledger, group commit, identity, and the cluster's minters."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from ..admin_auth import AdminVerifier
from ..backup.archive import Archive
from ..backup.archiver import Archiver
from ..backup.objectstore import S3Location, S3Store
from ..config import ConfigError, NodeConfig, raft_id
from ..consensus.replicator import Outcome, RaftSettings, Replicator
from ..ledger.codes import Code
from ..ledger.commands import Command
from ..ledger.state import configure_entry
from . import identity
from .batcher import GroupCommitter, OutcomeUnknown, Unavailable
from .events import EventFeed
from .machine import LedgerMachine
from .metrics import Metrics, archive_gauges, raft_gauges, volume_gauges
from .verifier import Verifier

log = logging.getLogger(__name__)


#: Writes are refused while less than this is free on the data volume: the store, the journal and
#: a snapshot being received need room to finish what is already accepted.
RESERVE_BYTES = 4 << 20


class DiskFullError(Exception):
    """The data volume is (nearly) full: the write was refused, nothing of it was applied."""


@dataclass(frozen=True)
class BackupSettings:
    location: S3Location
    every_s: float = 2.0  # how often the leader uploads what it applied since


class LedgerNode:
    def __init__(
        self,
        config: NodeConfig,
        secret: str,
        settings: RaftSettings = RaftSettings(),
        faults: frozenset[str] = frozenset(),
        admin_key: str | None = None,
        backup: BackupSettings | None = None,
    ) -> None:
        """`secret` seals Raft traffic and nothing else; `admin_key` (hex ed25519 public key), when
        given, is the only credential the admin API accepts; `backup`: where to archive."""
        self.config = config
        #: Deliberate misbehaviour for tests (see `walletnode serve --test-fault`); empty in production.
        self.faults = faults
        self._secret = secret
        self._settings = settings
        self.key: SigningKey = identity.load_or_create(self._ensure_dir(config.data_dir))
        self.machine = LedgerMachine(os.path.join(config.data_dir, "ledger.lmdb"))
        domain = self.machine.domain()
        if domain is not None and domain != config.cluster_id:
            self.machine.close()
            raise ConfigError(
                f"{config.data_dir} holds the ledger restored as cluster id {domain!r}: serve it with --cluster-id "
                f"{domain!r} (the id is its signing domain), not {config.cluster_id!r}"
            )
        self.metrics = Metrics()
        self.raft: Replicator | None = None
        self.committer: GroupCommitter | None = None
        self.events: EventFeed | None = None
        self.verifier = Verifier(config.cluster_id)
        self.admin = AdminVerifier(admin_key, config.cluster_id, config.name) if admin_key else None
        self.archiver: Archiver | None = None
        if backup is not None:
            archive = Archive(S3Store(backup.location), config.cluster_id)
            self.archiver = Archiver(archive, self.machine, self._leads, config.name, every_s=backup.every_s)
        self._tasks: list[asyncio.Task[Any]] = []

    @staticmethod
    def _ensure_dir(path: str) -> str:
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        with self.machine.reading() as ledger:
            self.events = EventFeed(loop, ledger.seq)
        self.machine.on_applied(self.events.applied_threadsafe)
        self.machine.on_applied(self.metrics.observe_entry)
        self.machine.on_restored(self.events.restored_threadsafe)
        self.raft = Replicator(
            raft_id(self.config.id),
            self.config.cluster_id,
            {raft_id(m.id): m.raft_address for m in self.config.members},
            self.config.founding,
            os.path.join(self.config.data_dir, "raft"),
            self._secret,
            self.machine,
            self._settings,
            bind_address=self.config.raft_bind,
            observer=self.metrics,
        )
        await self.raft.start()
        raft_gauges(self.metrics, self.raft.status)
        volume_gauges(self.metrics, self.config.data_dir)
        archive_gauges(self.metrics, lambda: self.archiver)
        self.committer = GroupCommitter(self.raft, observe_commit=self.metrics.commit_seconds.observe)
        self._tasks.append(asyncio.create_task(self._keep_minters_configured()))
        if self.archiver is not None:
            self._tasks.append(asyncio.create_task(self.archiver.run()))

    def _leads(self) -> bool:
        return self.raft is not None and self.raft.is_leader

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.raft is not None:
            await self.raft.stop()
        if self.archiver is not None:
            self.archiver.close()
        self.machine.close()
        self.verifier.close()

    # -- writes -----------------------------------------------------------------------------

    async def execute(self, commands: list[Command]) -> list[Code]:
        """Verify signatures here, replicate the rest, and return one code per command."""
        assert self.committer is not None
        problem = self.disk_problem()
        if problem is not None:
            raise DiskFullError(problem)
        ok = await self.verifier.verify(commands)
        admitted = [c for c, good in zip(commands, ok, strict=True) if good]
        codes = iter(await self.committer.submit(admitted) if admitted else [])
        results = [next(codes) if good else Code.INVALID_SIGNATURE for good in ok]
        self.metrics.observe_results(commands, results)
        return results

    def disk_problem(self) -> str | None:
        """Why this node cannot take writes now because of its disk, or None."""
        if self.machine.write_error is not None:
            return f"the ledger store could not write ({self.machine.write_error}); free space on the data volume"
        stat = os.statvfs(self.config.data_dir)
        free = stat.f_bavail * stat.f_frsize
        if free < RESERVE_BYTES:
            return (
                f"the data volume of {self.config.name} has {free} bytes free (writes stop below {RESERVE_BYTES}): "
                "free space or grow the volume; nothing acknowledged is lost and writes resume by themselves"
            )
        return None

    async def read_barrier(self) -> None:
        assert self.committer is not None
        await self.committer.read_barrier()

    # -- minters ----------------------------------------------------------------------------

    async def _keep_minters_configured(self) -> None:
        """The leader makes the replicated minter set match its configuration."""
        assert self.raft is not None and self.committer is not None
        wanted = frozenset(self.config.minters)
        while True:
            try:
                with self.machine.reading() as ledger:
                    current = ledger.minters
                if self.raft.is_leader and current != wanted:
                    await self.committer.read_barrier()  # an applied configure entry may not be published yet
                    with self.machine.reading() as ledger:
                        current = ledger.minters
                if self.raft.is_leader and current != wanted:
                    await self.committer.propose(configure_entry(wanted))
                    log.info("configured minters", extra={"minters": sorted(wanted)})
            except (Unavailable, OutcomeUnknown) as exc:
                log.warning("could not configure minters yet: %s", exc)
            await asyncio.sleep(0.2)

    @property
    def minters_configured(self) -> bool:
        with self.machine.reading() as ledger:
            return ledger.minters == frozenset(self.config.minters)

    # -- membership (used by the operator through the admin API) ---------------------------

    async def change_membership(self, action: str, address: str | None, member: int | None = None) -> Outcome:
        """`member`: the id of the member being added (its ordinal)."""
        assert self.raft is not None and self.committer is not None
        if self.committer.quorum_lost():
            return Outcome.NO_LEADER  # as for writes: say so at once rather than after the timeout
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def done(_result: Any, outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        if action == "add" and address and member is not None:
            self.raft.add_member(address, raft_id(member), done)
        elif action == "remove" and address:
            self.raft.remove_member(address, done)
        else:
            self.raft.transfer_leadership(address, done)
        try:
            return await asyncio.wait_for(future, 10)
        except TimeoutError:
            return Outcome.UNKNOWN
