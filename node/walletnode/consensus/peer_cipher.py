"""Authenticated encryption of Raft peer frames with a key derived from the cluster secret.

A sealed frame is `nonce (12) | ciphertext and tag` (AES-256-GCM). Only a holder of the cluster
secret can read a frame or make one that opens: a pod without it can neither join nor listen.
The key is derived for this purpose alone (its own salt), so it is not the secret itself.

Nonces are a random 8-byte prefix drawn per process plus a 4-byte counter, so they never repeat
under one key however long a node runs (random 96-bit nonces would near their safe limit of
2**32 frames in about a year of heartbeats); the prefix is drawn again when the counter wraps.
"""

from __future__ import annotations

import itertools
import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

_SALT = b"walletcluster/v1 raft peers"
NONCE = 12


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

    def seal(self, data: bytes) -> bytes:
        nonce = self._nonce()
        return nonce + self._aead.encrypt(nonce, data, None)

    def open(self, token: bytes) -> bytes:
        if len(token) < NONCE + 16:
            raise InvalidMessage("peer frame too short")
        try:
            return self._aead.decrypt(token[:NONCE], token[NONCE:], None)
        except InvalidTag as e:
            raise InvalidMessage("peer frame failed authentication (wrong cluster secret?)") from e
