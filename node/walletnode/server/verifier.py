"""Signature verification off the event loop, on as many cores as the machine has.

Verifying is the most expensive thing a node does per command (~55 µs of libsodium each).
libsodium runs without the GIL, so a thread pool verifies one large batch on several cores at
once, and meanwhile the event loop keeps parsing requests and the Raft thread keeps replicating.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ..ledger.commands import Command
from ..ledger.signing import verify_all

# Below this, splitting a batch costs more in hand-offs than it wins in parallelism.
MIN_CHUNK = 64


class Verifier:
    def __init__(self, cluster_id: str, threads: int | None = None) -> None:
        self.cluster_id = cluster_id
        self.threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="verify")

    async def verify(self, commands: Sequence[Command]) -> list[bool]:
        """One flag per command: True when its signature is its signer's for this cluster."""
        if not commands:
            return []
        loop = asyncio.get_running_loop()
        parts = max(1, min(self.threads, len(commands) // MIN_CHUNK))
        size = -(-len(commands) // parts)
        chunks = [commands[i : i + size] for i in range(0, len(commands), size)]
        results = await asyncio.gather(
            *(loop.run_in_executor(self._pool, verify_all, self.cluster_id, chunk) for chunk in chunks)
        )
        return [flag for chunk in results for flag in chunk]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
