"""A writer thread for tests that cut a ledger's history at a known point (backups, restores)."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from walletnode.client import WalletClient, new_id
from walletnode.ledger.commands import Transfer
from walletnode.ledger.signing import public_hex, sign


@dataclass(frozen=True)
class Cut:
    """A point in the ledger's history: its entry and audit hash there, how many transfers had
    been acknowledged, and a time after all of them and before any later one."""

    seq: int
    audit_hash: str
    acked: int
    time: datetime.datetime


class Writer:
    """Transfers of 1 from `sender` to `receiver`, one at a time, recording which were
    acknowledged when; paused and resumed around the cuts a test makes."""

    def __init__(self, client: WalletClient, sender: SigningKey, receiver: SigningKey) -> None:
        self.client, self.sender, self.receiver = client, sender, receiver
        self.acked: list[tuple[str, float, Transfer]] = []  # (id, acknowledged at, the signed transfer)
        self._run = threading.Event()
        self._stop = False
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            if not self._run.wait(0.05):
                self._idle.set()
                continue
            self._idle.clear()
            command = sign(
                self.sender,
                self.client.cluster_id,
                Transfer(
                    id=new_id(),
                    from_=public_hex(self.sender),
                    to=public_hex(self.receiver),
                    currency="USD",
                    amount=1,
                    signature="0" * 128,
                ),
            )
            if self.client.submit([command]) == ["ok"]:
                self.acked.append((command.id, time.time(), command))

    def resume(self) -> None:
        self._run.set()

    def pause(self) -> None:
        self._run.clear()
        self._idle.clear()
        assert self._idle.wait(30), "the writer did not stop"

    def close(self) -> None:
        self._stop = True
        self._thread.join(30)

    def cut(self, settled: Callable[[], dict[str, Any]], after: int = 40) -> Cut:
        """Pause, note where the ledger is (`settled`: the leader's status once it stays put) and
        a time between the transfers before and after; then `after` more transfers, and pause."""
        self.pause()
        at = settled()
        acked = len(self.acked)
        time.sleep(0.4)
        when = datetime.datetime.now(datetime.UTC)
        time.sleep(0.4)
        self.resume()
        deadline = time.monotonic() + 60
        while len(self.acked) < acked + after:
            assert time.monotonic() < deadline, f"only {len(self.acked) - acked} transfers after the cut in 60s"
            time.sleep(0.05)
        self.pause()
        return Cut(at["audit_index"], at["audit_hash"], acked, when)
