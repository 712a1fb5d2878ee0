"""The Python client: signs commands, talks to any node, retries safely with the same ids.

Writes are idempotent by id, so after a timeout or a 503 the client sends the very same signed
commands again (to the same or another node) until it gets an answer: no duplicate, no loss.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .ledger.commands import Command, CreateCurrency, Mint, Transfer
from .ledger.signing import public_hex, sign
from .server.identity import attestation_bytes
from .tls import client_context

PLACEHOLDER_SIG = "0" * 128


class ClientError(Exception):
    """Base of everything the client raises."""


class ClusterUnavailable(ClientError):
    """No node answered (or every node said 503) before the deadline."""


class Rejected(ClientError):
    """The cluster refused the request itself (4xx): retrying will not help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


class AttestationError(ClientError):
    """No majority of replicas attested the same answer at the same index."""

    def __init__(self, message: str, dissenting: dict[str, str]) -> None:
        super().__init__(message)
        self.dissenting = dissenting


@dataclass(frozen=True)
class Attested:
    """A balance a majority of replicas signed at the same index and audit hash."""

    balances: dict[str, int]
    index: int
    audit_hash: str
    agreeing: list[str]
    dissenting: dict[str, str] = field(default_factory=dict)  # node -> what it said instead


def new_id() -> str:
    """A command id that sorts by time (milliseconds since the epoch, then 80 random bits, like a
    UUIDv7): stores index ids in a B-tree, where new ids at its end touch its last pages only,
    and random ones a page each. Any unique id is accepted; these are cheaper to keep."""
    return (time.time_ns() // 1_000_000).to_bytes(6, "big").hex() + os.urandom(10).hex()


def to_minor(amount: str, scale: int) -> int:
    """'12.50' at scale 2 -> 1250; more decimals than the currency has is an error, not rounding."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite number")
    if value < 0:
        raise ValueError(f"{amount} is negative")
    minor = value.scaleb(scale)
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more than {scale} decimal places")
    return int(minor)


def to_display(minor: int, scale: int) -> str:
    return f"{Decimal(minor).scaleb(-scale):.{scale}f}"


class WalletClient:
    """A client of one cluster's nodes (`urls`).

    `ca`: the PEM bundle the nodes' certificates must chain to (default: $WALLET_CA, else the
    system's trust store). Plain `http://` URLs are refused unless `insecure`. `node_keys` pins
    the replicas' identity keys (node name -> hex public key, as the operator publishes them in
    the WalletCluster status): attested answers are then checked against these, never against
    what a node says about itself. `tls_server_name` checks every node's certificate for this one
    name instead of the URL's host (as kubeconfig's tls-server-name: for nodes reached by IP).
    """

    def __init__(
        self,
        urls: Sequence[str],
        deadline_s: float = 30.0,
        timeout_s: float = 15.0,
        *,
        ca: str | None = None,
        insecure: bool = False,
        node_keys: dict[str, str] | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        if not urls:
            raise ClientError("no node URL given (set WALLET_URL)")
        self.urls = [u.rstrip("/") for u in urls]
        for url in self.urls:
            scheme = url.partition("://")[0].lower()
            if scheme not in ("http", "https"):
                raise ClientError(f"{url!r} is not an http:// or https:// URL")
            if scheme == "http" and not insecure:
                raise ClientError(
                    f"{url} is plain HTTP: balances and signatures would cross the network in the clear; "
                    "use https:// or allow it explicitly with --insecure (WALLET_INSECURE=1)"
                )
        ca = ca or os.environ.get("WALLET_CA") or None
        if ca is not None and not os.path.isfile(ca):
            raise ClientError(f"the CA bundle {ca} (--ca / WALLET_CA) does not exist")
        self._deadline = deadline_s
        self._http = httpx.Client(timeout=timeout_s, verify=client_context(ca))
        self._tls: dict[str, Any] = {"sni_hostname": tls_server_name} if tls_server_name else {}
        self._preferred = 0
        self._cluster_id: str | None = None
        self._identities: dict[str, tuple[str, VerifyKey]] = {}  # url -> (node name, identity key)
        self._pinned = {name: VerifyKey(bytes.fromhex(key)) for name, key in (node_keys or {}).items()}
        self._leader_known = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WalletClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        """Send to the preferred node, moving on to the others on failure, until the deadline."""
        deadline = time.monotonic() + self._deadline
        content = msgspec.json.encode(body) if body is not None else None
        last_problem = "no attempt"
        attempt = 0
        while True:
            index = (self._preferred + attempt) % len(self.urls)
            url = self.urls[index]
            try:
                r = self._http.request(
                    method,
                    url + path,
                    content=content,
                    params=params,
                    headers={"Content-Type": "application/json"} if content else None,
                    extensions=self._tls,
                )
            except httpx.HTTPError as exc:
                last_problem = f"{url}: {exc.__class__.__name__}: {exc}"
            else:
                if r.status_code < 500:
                    self._preferred = index
                    data = r.json()
                    if r.status_code >= 400:
                        raise Rejected(r.status_code, data.get("error", "error"), data.get("message", r.text))
                    return data
                last_problem = f"{url}: {r.status_code} {r.text[:200]}"
            attempt += 1
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"no node could answer within {self._deadline:.0f}s; last: {last_problem}")
            if attempt % len(self.urls) == 0:
                time.sleep(min(0.05 * attempt, 0.5))

    @property
    def cluster_id(self) -> str:
        if self._cluster_id is None:
            self._cluster_id = str(self.request("GET", "/v1/status")["cluster_id"])
        return self._cluster_id

    # -- writes -----------------------------------------------------------------------------

    def follow_leader(self) -> None:
        """Prefer the leader's URL for what follows (any node works; the leader saves a hop)."""
        statuses = {i: self._safe_status(url) for i, url in enumerate(self.urls)}
        by_name = {s["name"]: i for i, s in statuses.items() if s}
        leaders = [s["leader"] for s in statuses.values() if s and s.get("leader") in by_name]
        if leaders:
            self._preferred = by_name[leaders[0]]
        self._leader_known = True

    def _safe_status(self, url: str) -> dict[str, Any] | None:
        try:
            return self.status_of(url)
        except httpx.HTTPError:
            return None

    def submit(self, commands: Sequence[Command]) -> list[str]:
        """Send signed commands of one kind; returns one result code per command."""
        if not self._leader_known:
            self.follow_leader()
        path = {CreateCurrency: "/v1/currencies", Mint: "/v1/mint", Transfer: "/v1/transfers"}[type(commands[0])]
        body = {"commands": [msgspec.to_builtins(c) for c in commands]}
        for item in body["commands"]:
            item.pop("kind", None)
        return [r["result"] for r in self.request("POST", path, body)["results"]]

    def create_currency(self, key: SigningKey, code: str, scale: int, command_id: str | None = None) -> str:
        command = CreateCurrency(
            id=command_id or new_id(), minter=public_hex(key), code=code, scale=scale, signature=PLACEHOLDER_SIG
        )
        return self.submit([sign(key, self.cluster_id, command)])[0]

    def mint(self, key: SigningKey, to: str, currency: str, amount: int, command_id: str | None = None) -> str:
        command = Mint(
            id=command_id or new_id(),
            minter=public_hex(key),
            to=to,
            currency=currency,
            amount=amount,
            signature=PLACEHOLDER_SIG,
        )
        return self.submit([sign(key, self.cluster_id, command)])[0]

    def transfer(self, key: SigningKey, to: str, currency: str, amount: int, command_id: str | None = None) -> str:
        return self.submit([self.signed_transfer(key, to, currency, amount, command_id)])[0]

    def signed_transfer(
        self, key: SigningKey, to: str, currency: str, amount: int, command_id: str | None = None
    ) -> Transfer:
        command = Transfer(
            id=command_id or new_id(),
            from_=public_hex(key),
            to=to,
            currency=currency,
            amount=amount,
            signature=PLACEHOLDER_SIG,
        )
        signed = sign(key, self.cluster_id, command)
        assert isinstance(signed, Transfer)
        return signed

    # -- reads ------------------------------------------------------------------------------

    def balances(self, account: str, consistency: str = "linearizable") -> dict[str, int]:
        data = self.request("GET", f"/v1/accounts/{account}/balances", params={"consistency": consistency})
        return dict(data["balances"])

    def history(self, account: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        params = {"after": str(after), "limit": str(limit)}
        return dict(self.request("GET", f"/v1/accounts/{account}/transfers", params=params))

    def command(self, command_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/transfers/{command_id}"))

    def attested_balances(self, account: str, attempts: int = 10) -> Attested:
        """Ask every replica for a signed balance; accept it only if a majority agree at one index.

        Each answer's signature is checked against the replica's identity key (as first seen in
        its /v1/status). A replica that signs something else, signs badly or cannot answer is
        reported by name. Under concurrent writes replicas may answer at different indexes, so
        this asks again (up to `attempts` times) before giving up.
        """
        needed = len(self.urls) // 2 + 1
        dissenting: dict[str, str] = {}
        with ThreadPoolExecutor(len(self.urls)) as pool:
            for _ in range(attempts):
                answers = list(pool.map(lambda url: self._attested_answer(url, account), self.urls))
                votes = Counter(a[1] for a in answers if a[1] is not None)
                if votes:
                    (index, audit_hash, answer), count = votes.most_common(1)[0]
                    if count >= needed:
                        agreeing = [name for name, vote, _ in answers if vote == (index, audit_hash, answer)]
                        dissenting = {name: why for name, vote, why in answers if vote != (index, audit_hash, answer)}
                        return Attested(json.loads(answer)["balances"], index, audit_hash, agreeing, dissenting)
                dissenting = {name: why for name, _, why in answers}
                time.sleep(0.05)
        raise AttestationError(f"no majority of {len(self.urls)} replicas attested the same balance", dissenting)

    def _identity(self, url: str) -> tuple[str, VerifyKey]:
        """The node at `url` and its identity key: the pinned key for its name when keys were
        given (a node with no pinned key is not believed), else the key it published first."""
        if url not in self._identities:
            status = self.status_of(url)
            name = status["name"]
            if self._pinned:
                if name not in self._pinned:
                    raise ValueError(f"{name} has no pinned identity key")
                self._identities[url] = (name, self._pinned[name])
            else:
                self._identities[url] = (name, VerifyKey(bytes.fromhex(status["node_key"])))
        return self._identities[url]

    def _attested_answer(self, url: str, account: str) -> tuple[str, tuple[int, str, bytes] | None, str]:
        """(node name, (index, audit hash, canonical answer) or None, what it said)."""
        try:
            name, key = self._identity(url)
            r = self._http.get(f"{url}/v1/accounts/{account}/balances", params={"attest": "true"}, extensions=self._tls)
            body = r.json()
            att = body["attestation"]
            answer = msgspec.json.encode({"account": account, "balances": body["balances"]}, order="sorted")
            signed = attestation_bytes(
                self.cluster_id, att["node"], att["index"], bytes.fromhex(att["audit_hash"]), answer
            )
            key.verify(signed, bytes.fromhex(att["signature"]))
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            return url, None, f"no valid answer: {exc.__class__.__name__}: {exc}"
        except BadSignatureError:
            return name, None, "attestation signature does not verify with its node key"
        if att["node"] != name:
            return name, None, f"signed as {att['node']!r}"
        said = f"{body['balances']} at index {att['index']}"
        return name, (att["index"], att["audit_hash"], answer), said

    def events(self, after: int = 0, stop_at: int | None = None) -> Iterator[dict[str, Any]]:
        """Applied entries from index `after + 1`, following node failures (resumes by Last-Event-ID)."""
        last = after
        failures = 0
        while stop_at is None or last < stop_at:
            url = self.urls[(self._preferred + failures) % len(self.urls)]
            try:
                with self._http.stream(
                    "GET",
                    url + "/v1/events",
                    headers={"Last-Event-ID": str(last)},
                    timeout=httpx.Timeout(10, read=60),
                    extensions=self._tls,
                ) as r:
                    for event in _sse(r.iter_lines()):
                        if event.get("event") != "entry":
                            continue
                        data = json.loads(event["data"])
                        last = data["index"]
                        failures = 0
                        yield data
                        if stop_at is not None and last >= stop_at:
                            return
            except httpx.HTTPError:
                failures += 1
                if failures > 3 * len(self.urls):
                    raise ClusterUnavailable("no node serves the event stream") from None
                time.sleep(min(0.1 * failures, 1.0))

    def currencies(self) -> dict[str, int]:
        """code -> scale"""
        return {c["code"]: c["scale"] for c in self.request("GET", "/v1/currencies")["currencies"]}

    def status_of(self, url: str) -> dict[str, Any]:
        r = self._http.get(url.rstrip("/") + "/v1/status", extensions=self._tls)
        r.raise_for_status()
        return dict(r.json())


def _sse(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Parse Server-Sent Events into {field: value} dicts (comments and keep-alives skipped)."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
