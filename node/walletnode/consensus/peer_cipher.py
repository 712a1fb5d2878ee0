"""Authenticated encryption of Raft peer messages with the cluster secret.

pysyncobj encrypts peer messages with Fernet (AES-CBC, HMAC-SHA256, then base64): base64 alone
was 38% of a follower's CPU while it received a snapshot, and Fernet is paid on every entry
sent to every follower. `PeerCipher` offers the three methods pysyncobj calls, with AES-256-GCM
and no text encoding. A message is `timestamp (8) | nonce (12) | ciphertext and tag`; the
timestamp is authenticated as associated data (pysyncobj reads it before decrypting, to refuse
messages older than the last one on the connection).

Nonces are a random 8-byte prefix drawn per process plus a 4-byte counter, so they never repeat
under one key however long a node runs (random 96-bit nonces would near their safe limit of
2**32 messages in about a year of heartbeats); the prefix is drawn again when the counter wraps.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

_SALT = b"walletcluster/v1 raft peers"
_HEADER = struct.Struct(">Q12s")


class InvalidMessage(Exception):
    pass


def derive_key(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    return PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=_SALT, iterations=100_000).derive(raw)


class PeerCipher:
    def __init__(self, secret: str | bytes) -> None:
        self._aead = AESGCM(derive_key(secret))
        self._lock = threading.Lock()
        self._new_prefix()

    def _new_prefix(self) -> None:
        self._prefix = os.urandom(8)
        self._counter = itertools.count()

    def _nonce(self) -> bytes:
        with self._lock:
            n = next(self._counter)
            if n >= 1 << 32:
                self._new_prefix()
                n = next(self._counter)
            return self._prefix + n.to_bytes(4, "big")

    def encrypt_at_time(self, data: bytes, timestamp: int) -> bytes:
        header = _HEADER.pack(timestamp, self._nonce())
        return header + self._aead.encrypt(header[8:], data, header)

    def extract_timestamp(self, token: bytes) -> int:
        """The sender's timestamp, not yet authenticated (`decrypt` checks it)."""
        if len(token) < _HEADER.size:
            raise InvalidMessage("peer message too short")
        return int(_HEADER.unpack_from(token)[0])

    def decrypt(self, token: bytes) -> bytes:
        if len(token) < _HEADER.size + 16:
            raise InvalidMessage("peer message too short")
        header = token[: _HEADER.size]
        try:
            return self._aead.decrypt(header[8:], token[_HEADER.size :], header)
        except InvalidTag as e:
            raise InvalidMessage("peer message failed authentication (wrong cluster secret?)") from e
