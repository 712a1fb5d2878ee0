"""Concurrent clients: writers sending transfers with unique ids, readers doing linearizable reads.

Every operation is recorded with its invocation and completion time (seconds since the run began,
monotonic clock) and its outcome. Writers use `WalletClient`, which retries the very same signed
command on timeouts and 503s; it is given a bounded deadline, after which the outcome is `unknown`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from nacl.signing import SigningKey

from walletnode.client import ClientError, Rejected, WalletClient
from walletnode.ledger.signing import public_hex

from .checker import OK_CODES, Record

CURRENCIES = ("USD", "EUR")
# Rich accounts never run dry; the last account is poor in EUR, so some transfers are definitely
# rejected (insufficient_funds) and the checker sees `failed` outcomes too.
RICH = 10**7
POOR = 30


class Workload:
    def __init__(
        self,
        urls: Sequence[str],
        minter: SigningKey,
        seed: int,
        writers: int = 4,
        readers: int = 2,
        accounts: int = 4,
        write_deadline_s: float = 6.0,
        read_deadline_s: float = 4.0,
        pause_s: float = 0.01,
    ) -> None:
        self.urls = list(urls)
        self.minter = minter
        self.rng = random.Random(seed)
        self.keys = [SigningKey(self.rng.randbytes(32)) for _ in range(accounts)]
        self.accounts = [public_hex(k) for k in self.keys]
        self.writers, self.readers = writers, readers
        self.write_deadline_s, self.read_deadline_s = write_deadline_s, read_deadline_s
        self.pause_s = pause_s
        self.history: list[Record] = []
        self.minted: dict[str, dict[str, int]] = {}
        self.mint_ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def setup(self) -> None:
        """Create the currencies and fund every account (before any fault)."""
        with WalletClient(self.urls, deadline_s=60, timeout_s=5, insecure=True) as c:
            for code in CURRENCIES:
                assert c.create_currency(self.minter, code, 2) in ("ok", "exists", "currency_exists")
            for n, account in enumerate(self.accounts):
                self.minted[account] = {}
                for code in CURRENCIES:
                    amount = POOR if (n == len(self.accounts) - 1 and code == "EUR") else RICH
                    command_id = self.rng.randbytes(16).hex()
                    assert c.mint(self.minter, account, code, amount, command_id) in OK_CODES
                    self.mint_ids.add(command_id)
                    self.minted[account][code] = amount

    def record(self, op: Record) -> None:
        with self._lock:
            self.history.append(op)

    def start(self) -> None:
        for p in range(self.writers):
            self._threads.append(threading.Thread(target=self._writer, args=(p, self.rng.getrandbits(64)), daemon=True))
        for p in range(self.readers):
            seed = self.rng.getrandbits(64)
            self._threads.append(threading.Thread(target=self._reader, args=(self.writers + p, seed), daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.write_deadline_s + 30)
            if t.is_alive():
                raise RuntimeError("a client thread did not stop")

    def _writer(self, process: int, seed: int) -> None:
        rng = random.Random(seed)
        urls = self.urls[:]
        rng.shuffle(urls)
        with WalletClient(urls, deadline_s=self.write_deadline_s, timeout_s=2, insecure=True) as c:
            cluster_id = None
            while cluster_id is None and not self._stop.is_set():
                try:
                    cluster_id = c.cluster_id
                except ClientError:
                    time.sleep(0.2)
            while not self._stop.is_set():
                a, b = rng.sample(range(len(self.keys)), 2)
                currency = rng.choice(CURRENCIES)
                amount = rng.randint(1, 9)
                t = c.signed_transfer(self.keys[a], self.accounts[b], currency, amount, rng.randbytes(16).hex())
                op: Record = {
                    "process": process, "type": "transfer", "id": t.id, "from": self.accounts[a],
                    "to": self.accounts[b], "currency": currency, "amount": amount, "inv": self.now(),
                }  # fmt: skip
                try:
                    result = c.submit([t])[0]
                except Rejected as exc:
                    # A 4xx for a well-formed command should not happen; it says nothing about
                    # whether an earlier attempt was applied, so the outcome stays unknown.
                    op.update(ret=None, outcome="unknown", result=f"rejected:{exc.code}")
                except ClientError as exc:
                    op.update(ret=None, outcome="unknown", result=f"gave up: {exc.__class__.__name__}")
                else:
                    op.update(ret=self.now(), outcome="ok" if result in OK_CODES else "failed", result=result)
                self.record(op)
                time.sleep(self.pause_s)

    def _reader(self, process: int, seed: int) -> None:
        rng = random.Random(seed)
        urls = self.urls[:]
        rng.shuffle(urls)
        with WalletClient(urls, deadline_s=self.read_deadline_s, timeout_s=2, insecure=True) as c:
            while not self._stop.is_set():
                account = rng.choice(self.accounts)
                op: Record = {"process": process, "type": "read", "account": account, "inv": self.now()}
                try:
                    balances: dict[str, Any] = c.balances(account)
                except ClientError as exc:
                    op.update(ret=None, outcome="unknown", balances=None, result=exc.__class__.__name__)
                else:
                    op.update(ret=self.now(), outcome="ok", balances=balances)
                self.record(op)
                time.sleep(self.pause_s)
