"""The Python client: signs commands, talks to any node, retries safely with the same ids.

Writes are idempotent by id, so after a timeout or a 503 the client sends the very same signed
commands again (to the same or another node) until it gets an answer: no duplicate, no loss.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import msgspec
from nacl.signing import SigningKey

from .ledger.commands import Command, CreateCurrency, Mint, Transfer
from .ledger.signing import public_hex, sign

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


def new_id() -> str:
    return os.urandom(16).hex()


def to_minor(amount: str, scale: int) -> int:
    """'12.50' at scale 2 -> 1250; more decimals than the currency has is an error, not rounding."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a finite number")
    minor = value.scaleb(scale)
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more than {scale} decimal places")
    return int(minor)


def to_display(minor: int, scale: int) -> str:
    return f"{Decimal(minor).scaleb(-scale):.{scale}f}"


class WalletClient:
    def __init__(self, urls: Sequence[str], deadline_s: float = 30.0, timeout_s: float = 15.0) -> None:
        if not urls:
            raise ClientError("no node URL given (set WALLET_URL)")
        self.urls = [u.rstrip("/") for u in urls]
        self._deadline = deadline_s
        self._http = httpx.Client(timeout=timeout_s)
        self._preferred = 0
        self._cluster_id: str | None = None

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

    def submit(self, commands: Sequence[Command]) -> list[str]:
        """Send signed commands of one kind; returns one result code per command."""
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

    def currencies(self) -> dict[str, int]:
        """code -> scale"""
        return {c["code"]: c["scale"] for c in self.request("GET", "/v1/currencies")["currencies"]}

    def status_of(self, url: str) -> dict[str, Any]:
        r = self._http.get(url.rstrip("/") + "/v1/status")
        r.raise_for_status()
        return dict(r.json())
