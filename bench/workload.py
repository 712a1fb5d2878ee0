"""The workload both systems get: N equally funded accounts, random pairs, amount 1, fixed batch size.

Pairs come from a seeded generator, so within a round both systems receive the very same sequence
of transfers. Our transfers are ed25519-signed before the clock starts, in worker processes (both
cores are free then); etcd needs no signatures, its driver takes the pairs as they are.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import msgspec
from nacl.signing import SigningKey

from walletnode.client import new_id
from walletnode.ledger.commands import Command, Mint, Transfer
from walletnode.ledger.signing import public_hex, sign

CURRENCY = "BENCH"
PLACEHOLDER = "0" * 128
MINTER = SigningKey(hashlib.sha256(b"walletcluster bench minter").digest())

Pair = tuple[int, int]  # (sender index, receiver index)
Batch = list[Pair]


@dataclass(frozen=True)
class Workload:
    accounts: int
    batch_size: int
    initial_balance: int = 10**9
    amount: int = 1
    seed: int = 1

    @property
    def total(self) -> int:
        """Money in the system: what the sum of all balances must stay equal to."""
        return self.accounts * self.initial_balance

    def batches(self, count: int, salt: str) -> list[Batch]:
        """`count` batches of random distinct pairs; the same `salt` gives the same batches."""
        rng = random.Random(f"{self.seed}/{salt}")
        out = []
        for _ in range(count):
            batch = []
            for _ in range(self.batch_size):
                a = rng.randrange(self.accounts)
                b = rng.randrange(self.accounts - 1)
                batch.append((a, b + (b >= a)))
            out.append(batch)
        return out


def account_key(seed: int, i: int) -> SigningKey:
    """Deterministic keys: worker processes rebuild them from (seed, i) instead of receiving them."""
    return SigningKey(hashlib.sha256(f"bench/{seed}/{i}".encode()).digest())


def wire(command: Command) -> dict[str, object]:
    """A command as the HTTP API takes it (the kind is given by the endpoint, not a field)."""
    data = msgspec.to_builtins(command)
    data.pop("kind", None)
    return dict(data)


_keys: list[SigningKey] = []
_publics: list[str] = []


def _init_worker(seed: int, accounts: int) -> None:
    global _keys, _publics
    _keys = [account_key(seed, i) for i in range(accounts)]
    _publics = [public_hex(k) for k in _keys]


def _sign_bodies(cluster_id: str, batches: list[Batch], amount: int) -> list[bytes]:
    bodies = []
    for batch in batches:
        commands = []
        for a, b in batch:
            t = Transfer(
                id=new_id(),
                from_=_publics[a],
                to=_publics[b],
                currency=CURRENCY,
                amount=amount,
                signature=PLACEHOLDER,
            )
            commands.append(wire(sign(_keys[a], cluster_id, t)))
        bodies.append(msgspec.json.encode({"commands": commands}))
    return bodies


def _sign_mints(cluster_id: str, recipients: list[str], amount: int) -> bytes:
    minter = public_hex(MINTER)
    commands = [
        wire(
            sign(
                MINTER,
                cluster_id,
                Mint(
                    id=new_id(),
                    minter=minter,
                    to=to,
                    currency=CURRENCY,
                    amount=amount,
                    signature=PLACEHOLDER,
                ),
            )
        )
        for to in recipients
    ]
    return msgspec.json.encode({"commands": commands})


class Signer:
    """Signs request bodies in worker processes (one per core), off the clock."""

    def __init__(self, workload: Workload, workers: int | None = None) -> None:
        self.workload = workload
        self.workers = workers or os.cpu_count() or 1
        # spawn, not fork: the parent runs an event loop and HTTP clients by the time a worker starts.
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(workload.seed, workload.accounts),
        )
        self.publics = [public_hex(account_key(workload.seed, i)) for i in range(workload.accounts)]

    def transfer_bodies(self, cluster_id: str, batches: Sequence[Batch]) -> list[bytes]:
        """One JSON body per batch (POST /v1/transfers), every transfer signed by its sender."""
        size = max(1, -(-len(batches) // (4 * self.workers)))
        chunks = [list(batches[i : i + size]) for i in range(0, len(batches), size)]
        futures = [self._pool.submit(_sign_bodies, cluster_id, c, self.workload.amount) for c in chunks]
        return [body for f in futures for body in f.result()]

    def mint_bodies(self, cluster_id: str, recipients: Sequence[str], amount: int, per_request: int) -> Iterator[bytes]:
        """Mint bodies (POST /v1/mint) of `per_request` commands each, signed a few requests ahead
        of the consumer, so signing a million mints overlaps with submitting them."""
        ahead: deque[Future[bytes]] = deque()
        for start in range(0, len(recipients), per_request):
            group = list(recipients[start : start + per_request])
            ahead.append(self._pool.submit(_sign_mints, cluster_id, group, amount))
            if len(ahead) > 2 * self.workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)
