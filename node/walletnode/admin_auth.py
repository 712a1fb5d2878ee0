"""The admin credential: requests signed with an ed25519 key only the operator holds.

Nodes know only the public key, so nothing a node holds (or leaks) can authorise an admin call,
and the cluster secret that seals Raft traffic authorises none. A signature covers

    "walletcluster/v1 admin\\0" | cluster id | audience | method | path and query | sha256(body)
    | timestamp | nonce

(each text field length-prefixed). The audience is the name of the node addressed, so a request
for one node is void at another; the timestamp bounds its life to WINDOW_S either side of the
node's clock; the nonce is remembered for that long, so a captured request replayed is refused.
A node also refuses requests signed before it started: its memory of nonces begins then.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
from collections.abc import Callable

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

DOMAIN = b"walletcluster/v1 admin\x00"
SCHEME = "WalletAdmin"
WINDOW_S = 30.0
_HEADER = re.compile(
    rf"^{SCHEME} ts=(?P<ts>[0-9]{{1,12}}\.[0-9]{{1,6}}),nonce=(?P<nonce>[0-9a-f]{{32}}),sig=(?P<sig>[0-9a-f]{{128}})$"
)


def _field(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def signed_bytes(
    cluster_id: str, audience: str, method: str, path: str, body: bytes, timestamp: str, nonce: str
) -> bytes:
    parts = (cluster_id, audience, method.upper(), path)
    return (
        DOMAIN
        + b"".join(_field(p.encode()) for p in parts)
        + hashlib.sha256(body).digest()
        + _field(timestamp.encode())
        + _field(nonce.encode())
    )


def authorization(
    key: SigningKey,
    cluster_id: str,
    audience: str,
    method: str,
    path: str,
    body: bytes = b"",
    now: float | None = None,
) -> str:
    """The `Authorization` header value for one admin request (use it once)."""
    timestamp = f"{time.time() if now is None else now:.6f}"
    nonce = os.urandom(16).hex()
    signature = key.sign(signed_bytes(cluster_id, audience, method, path, body, timestamp, nonce)).signature
    return f"{SCHEME} ts={timestamp},nonce={nonce},sig={signature.hex()}"


def load_signing_key(path: str) -> SigningKey:
    """A private admin key stored as 64 hex characters (its seed)."""
    with open(path) as f:
        text = f.read().strip()
    if len(text) != 64:
        raise ValueError(f"{path} does not hold an admin key (64 hex characters; it holds {len(text)})")
    try:
        return SigningKey(bytes.fromhex(text))
    except ValueError:
        raise ValueError(f"{path} does not hold an admin key: not hexadecimal") from None


def public_hex(key: SigningKey) -> str:
    return bytes(key.verify_key).hex()


class AdminVerifier:
    """Checks admin requests addressed to one node; remembers nonces for the validity window."""

    def __init__(
        self,
        public_key_hex: str,
        cluster_id: str,
        audience: str,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = VerifyKey(bytes.fromhex(public_key_hex))
        self._cluster_id, self._audience = cluster_id, audience
        self._window, self._clock = window_s, clock
        self._started = clock()
        self._seen: dict[str, float] = {}  # nonce -> timestamp, for as long as the timestamp is valid

    def check(self, header: str, method: str, path: str, body: bytes) -> str | None:
        """None if the request is authorised, else why not (safe to tell the caller)."""
        match = _HEADER.match(header)
        if match is None:
            return f"admin calls need 'Authorization: {SCHEME} ts=...,nonce=...,sig=...' signed with the admin key"
        now = self._clock()
        ts = float(match["ts"])
        if abs(now - ts) > self._window:
            return f"the request's timestamp is more than {self._window:.0f}s from this node's clock"
        if ts < self._started:
            return "the request was signed before this node started"
        signed = signed_bytes(self._cluster_id, self._audience, method, path, body, match["ts"], match["nonce"])
        try:
            self._key.verify(signed, bytes.fromhex(match["sig"]))
        except BadSignatureError:
            return "the signature does not verify with the admin key (or the request was for another node)"
        self._forget_before(now - self._window)
        if match["nonce"] in self._seen:
            return "this request was already used (replayed)"
        self._seen[match["nonce"]] = ts
        return None

    def _forget_before(self, cutoff: float) -> None:
        for nonce in [n for n, ts in self._seen.items() if ts < cutoff]:
            del self._seen[nonce]
