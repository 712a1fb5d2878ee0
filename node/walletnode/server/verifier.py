"""Signature checks of incoming commands, in batches, off the event loop.

Checking signatures is the most expensive thing a node does per command. Checked as a batch (the
native `walletcluster_sigs` module: one multi-scalar multiplication for all of a batch) a signature
costs ~16 µs at 100 a batch and ~14 µs at 800, against ~37 µs one by one through libsodium. So the
requests that arrive while a batch is being checked wait and are checked together as the next
one: under load batches grow by themselves, and an idle node checks a lone request at once. The
check runs without the GIL, on at most `threads` batches at a time, while the event loop keeps
parsing requests and the Raft loop keeps replicating.

A forged signature does not slow down the requests it was batched with beyond one failed batch
check: each request is then checked as a batch of its own, and only the failing request's
commands one by one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from walletcluster_sigs import verify_groups

from ..ledger.commands import Command

Item = tuple[bytes, bytes, bytes]


def signed_item(cluster_id: str, command: Command) -> Item:
    """The (public key, signature, signed bytes) of a command; its fields' formats are checked on decode."""
    return bytes.fromhex(command.signer()), bytes.fromhex(command.signature), command.signing_bytes(cluster_id)


def verify_commands(cluster_id: str, commands: Sequence[Command]) -> list[bool]:
    """One flag per command, checked as one batch on this thread (tests, benchmarks)."""
    return verify_groups([[signed_item(cluster_id, c) for c in commands]])[0]


class Verifier:
    def __init__(self, cluster_id: str, threads: int | None = None) -> None:
        self.cluster_id = cluster_id
        self.threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="verify")
        self._waiting: list[tuple[list[Item], asyncio.Future[list[bool]]]] = []
        self._checking = 0  # batches being checked now, at most self.threads

    async def verify(self, commands: Sequence[Command]) -> list[bool]:
        """One flag per command: True when its signature is its signer's for this cluster."""
        if not commands:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[bool]] = loop.create_future()
        self._waiting.append(([signed_item(self.cluster_id, c) for c in commands], done))
        if self._checking < self.threads:
            self._checking += 1
            loop.create_task(self._check_waiting())
        return await done

    async def _check_waiting(self) -> None:
        """Check everything waiting as one batch, and again while more comes in meanwhile."""
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    flags = await loop.run_in_executor(self._pool, verify_groups, [items for items, _ in batch])
                except Exception as e:  # e.g. the pool shut down: the requests fail, not the loop
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(e)
                    continue
                for (items, done), group_flags in zip(batch, flags, strict=True):
                    assert len(group_flags) == len(items)
                    if not done.done():  # its request may have been cancelled meanwhile
                        done.set_result(group_flags)
        finally:
            self._checking -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
