"""One asyncio driver per system, with the same interface: fund the accounts, submit a batch of
transfers, add up the balances afterwards.

Ours posts a pre-signed batch to the leader's POST /v1/transfers (one request, group-committed by
the node). etcd has no transfer: the classic client-side way is optimistic concurrency, so each
transfer of the batch runs concurrently as read-both-balances, then a compare-and-set transaction
(both keys' mod_revision unchanged -> put both new balances), retried on conflict.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import msgspec

from walletnode.ledger.commands import CreateCurrency
from walletnode.ledger.signing import public_hex, sign

from .workload import CURRENCY, MINTER, PLACEHOLDER, Batch, Signer, Workload, wire

JSON = {"Content-Type": "application/json"}
RETRY_DEADLINE_S = 60.0


@dataclass
class BatchResult:
    """What became of one batch: per-transfer latencies are seconds since the batch was sent."""

    ok: int = 0
    failed: int = 0
    conflicts: int = 0  # etcd: compare-and-set attempts that lost a race and were retried
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Balances:
    """Every account's balance added up: the conservation check after the rounds."""

    total: int
    accounts: int
    negative: int


class Driver(Protocol):
    name: str

    def server_pids(self) -> list[int]: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def fund(self, workload: Workload, signer: Signer) -> None: ...

    def prepare(self, batches: Sequence[Batch]) -> list[Any]:
        """Everything that can be done before the clock starts (signing, for us)."""
        ...

    async def submit(self, prepared: Any) -> BatchResult: ...

    async def balances(self) -> Balances: ...


def _session(connections: int, tls: ssl.SSLContext | bool = True) -> aiohttp.ClientSession:
    # A generous timeout: a slow answer must show up as latency, not as a failed transfer.
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, ssl=tls)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))


class _HttpDriver:
    """What both drivers share: the server processes (for CPU accounting) and one HTTP session."""

    def __init__(self, pids: Sequence[int], connections: int, tls: ssl.SSLContext | bool = True) -> None:
        """`tls`: how to verify HTTPS servers (a context trusting their CA)."""
        self.pids = list(pids)
        self._connections = connections
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None

    def server_pids(self) -> list[int]:
        return self.pids

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "open() first"
        return self._session

    async def open(self) -> None:
        self._session = _session(self._connections, self._tls)

    async def close(self) -> None:
        await self.session.close()


class _Result(msgspec.Struct):
    result: str


class _Results(msgspec.Struct):
    results: list[_Result]


_decode_results = msgspec.json.Decoder(_Results).decode
APPLIED = frozenset({"ok", "exists"})  # "exists": a retried request whose first attempt applied


class WalletDriver(_HttpDriver):
    """Our cluster: signed batches to the leader; 503s and dropped connections are retried with the
    same body (ids make that safe), as the documented client does."""

    name = "walletcluster"

    def __init__(
        self, urls: Sequence[str], pids: Sequence[int], connections: int = 256, tls: ssl.SSLContext | bool = True
    ) -> None:
        super().__init__(pids, connections, tls)
        self.urls = list(urls)
        self.leader = self.urls[0]
        self.cluster_id = ""
        self._signer: Signer | None = None
        self.accounts: list[str] = []
        self.retried = 0  # requests sent again after a 503 or a dropped connection

    async def open(self) -> None:
        await super().open()
        await self.find_leader()

    async def find_leader(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for url in self.urls:
                try:
                    async with self.session.get(url + "/v1/status") as r:
                        status = await r.json()
                except (aiohttp.ClientError, ValueError):
                    continue
                self.cluster_id = status["cluster_id"]
                if status["role"] == "leader":
                    self.leader = url
                    return url
            await asyncio.sleep(0.05)
        raise RuntimeError("no walletcluster leader")

    async def post(self, path: str, body: bytes) -> list[str]:
        """POST a batch; retry 503s and connection errors (other nodes too) until the deadline."""
        deadline = time.monotonic() + RETRY_DEADLINE_S
        url, attempt = self.leader, 0
        while True:
            try:
                async with self.session.post(url + path, data=body, headers=JSON) as r:
                    raw = await r.read()
                    if r.status == 200:
                        return [x.result for x in _decode_results(raw).results]
                    if r.status < 500:
                        raise RuntimeError(f"{path}: {r.status} {raw[:300]!r}")
            except aiohttp.ClientError:
                pass
            attempt += 1
            self.retried += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path}: no answer within {RETRY_DEADLINE_S}s")
            await asyncio.sleep(min(0.02 * attempt, 0.5))
            url = self.urls[attempt % len(self.urls)]

    async def fund(self, workload: Workload, signer: Signer) -> None:
        self._signer = signer
        self.accounts = signer.publics
        await self.create_currency()
        for body in signer.mint_bodies(self.cluster_id, self.accounts, workload.initial_balance, 8190):
            results = await self.post("/v1/mint", body)
            if any(r not in APPLIED for r in results):
                raise RuntimeError(f"funding failed: {sorted(set(results))}")

    async def create_currency(self) -> None:
        command = sign(
            MINTER,
            self.cluster_id,
            CreateCurrency(id="b" * 32, minter=public_hex(MINTER), code=CURRENCY, scale=0, signature=PLACEHOLDER),
        )
        result = await self.post("/v1/currencies", msgspec.json.encode({"commands": [wire(command)]}))
        if result[0] not in ("ok", "exists", "currency_exists"):
            raise RuntimeError(f"could not create {CURRENCY}: {result}")

    def prepare(self, batches: Sequence[Batch]) -> list[Any]:
        assert self._signer is not None, "fund() first"
        return list(self._signer.transfer_bodies(self.cluster_id, batches))

    async def submit(self, prepared: Any) -> BatchResult:
        started = time.perf_counter()
        results = await self.post("/v1/transfers", prepared)
        elapsed = time.perf_counter() - started
        ok = sum(r in APPLIED for r in results)
        return BatchResult(ok=ok, failed=len(results) - ok, latencies=[elapsed] * len(results))

    async def balances(self) -> Balances:
        """Every account's balance, read linearizably, summed."""
        gate = asyncio.Semaphore(32)

        async def one(account: str) -> int:
            async with (
                gate,
                self.session.get(f"{self.leader}/v1/accounts/{account}/balances", params={"currency": CURRENCY}) as r,
            ):
                body = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"balance of {account}: {r.status} {body}")
                return int(body["balances"].get(CURRENCY, 0))

        values = await asyncio.gather(*(one(a) for a in self.accounts))
        return Balances(total=sum(values), accounts=len(values), negative=sum(v < 0 for v in values))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _value(kv: dict[str, Any]) -> tuple[int, str]:
    """(balance, mod_revision) of a key-value from the gateway (int64s arrive as strings)."""
    return int(base64.b64decode(kv["value"])), kv["mod_revision"]


class EtcdError(Exception):
    """etcd refused or timed out ("request timed out" when it is far past saturation)."""


class EtcdDriver(_HttpDriver):
    """etcd through its JSON gateway. Reads are serializable (served by the member, no quorum
    round) because the compare-and-set validates them anyway: a stale read only costs a retry.
    Both reads go in one read-only /v3/kv/txn (one round trip, one revision for both keys), and a
    failed compare returns both keys' current values in the same response, so a retry needs no
    extra read. That is the cheapest correct way we know to do a transfer on etcd."""

    name = "etcd"
    PREFIX = b"acct/"
    MAX_ATTEMPTS = 1000

    def __init__(self, leader_url: str, pids: Sequence[int], connections: int = 4096) -> None:
        super().__init__(pids, connections)
        self.url = leader_url
        self._keys: list[str] = []
        self.amount = 1

    def key(self, i: int) -> bytes:
        return self.PREFIX + b"%07d" % i

    async def call(self, path: str, request: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(self.url + path, data=msgspec.json.encode(request), headers=JSON) as r:
            raw = await r.read()
            if r.status != 200:
                raise EtcdError(f"etcd {path}: {r.status} {raw[:300]!r}")
            return dict(msgspec.json.decode(raw))

    async def fund(self, workload: Workload, signer: Signer) -> None:
        self.amount = workload.amount
        self._keys = [_b64(self.key(i)) for i in range(workload.accounts)]
        value = _b64(b"%d" % workload.initial_balance)
        for start in range(0, len(self._keys), 128):  # etcd's default --max-txn-ops
            puts = [{"request_put": {"key": k, "value": value}} for k in self._keys[start : start + 128]]
            await self.call("/v3/kv/txn", {"success": puts})

    def prepare(self, batches: Sequence[Batch]) -> list[Any]:
        return list(batches)

    async def transfer(self, a: int, b: int) -> tuple[bool, int]:
        """Move `amount` from account a to b; (done, conflicts). An error (etcd times requests out
        when far past saturation) fails the transfer: a timed-out compare-and-set may still have
        applied, so retrying it blindly could move the money twice."""
        ka, kb = self._keys[a], self._keys[b]
        reads = [{"request_range": {"key": k, "serializable": True}} for k in (ka, kb)]
        response = await self.call("/v3/kv/txn", {"success": reads})
        conflicts = 0
        for _ in range(self.MAX_ATTEMPTS):
            (bal_a, rev_a), (bal_b, rev_b) = (_value(r["response_range"]["kvs"][0]) for r in response["responses"])
            if bal_a < self.amount:
                return False, conflicts
            txn = {
                "compare": [
                    {"key": ka, "target": "MOD", "result": "EQUAL", "mod_revision": rev_a},
                    {"key": kb, "target": "MOD", "result": "EQUAL", "mod_revision": rev_b},
                ],
                "success": [
                    {"request_put": {"key": ka, "value": _b64(b"%d" % (bal_a - self.amount))}},
                    {"request_put": {"key": kb, "value": _b64(b"%d" % (bal_b + self.amount))}},
                ],
                "failure": [{"request_range": {"key": k}} for k in (ka, kb)],
            }
            response = await self.call("/v3/kv/txn", txn)
            if response.get("succeeded"):  # the gateway omits false
                return True, conflicts
            conflicts += 1
        return False, conflicts

    async def submit(self, prepared: Any) -> BatchResult:
        started = time.perf_counter()
        result = BatchResult()

        async def one(a: int, b: int) -> None:
            try:
                done, conflicts = await self.transfer(a, b)
            except (EtcdError, aiohttp.ClientError):
                done, conflicts = False, 0
            result.latencies.append(time.perf_counter() - started)
            result.conflicts += conflicts
            if done:
                result.ok += 1
            else:
                result.failed += 1

        await asyncio.gather(*(one(a, b) for a, b in prepared))
        return result

    async def balances(self) -> Balances:
        end = self.PREFIX[:-1] + bytes([self.PREFIX[-1] + 1])
        response = await self.call("/v3/kv/range", {"key": _b64(self.PREFIX), "range_end": _b64(end)})
        values = [_value(kv)[0] for kv in response.get("kvs", [])]
        return Balances(total=sum(values), accounts=len(values), negative=sum(v < 0 for v in values))
