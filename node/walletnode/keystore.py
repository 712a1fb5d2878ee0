"""The walletctl keystore: one file per key in WALLET_HOME, encrypted with a password.

The private key is sealed with SecretBox under a key derived by argon2id from the password. An
empty password stores it in the clear (the caller warns). Files are written atomically, so a
command that fails half-way never leaves a damaged or half-written key behind.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import msgspec
from nacl import pwhash, secret, utils
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

from .consensus.durable import replace_atomically

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KeystoreError(Exception):
    pass


class _KeyFile(msgspec.Struct):
    name: str
    public: str
    encrypted: bool
    private: str  # hex: the seed, or SecretBox ciphertext (nonce included) when encrypted
    salt: str = ""
    opslimit: int = 0
    memlimit: int = 0


@dataclass(frozen=True)
class StoredKey:
    name: str
    public: str
    encrypted: bool


class Keystore:
    def __init__(self, home: str) -> None:
        self.home = home

    def _path(self, name: str) -> str:
        return os.path.join(self.home, f"{name}.key")

    def _load(self, name: str) -> _KeyFile:
        try:
            with open(self._path(name), "rb") as f:
                return msgspec.json.decode(f.read(), type=_KeyFile)
        except FileNotFoundError:
            raise KeystoreError(f"no key named {name!r} in {self.home}") from None
        except msgspec.DecodeError as exc:
            raise KeystoreError(f"key file {self._path(name)} is damaged: {exc}") from None

    def names(self) -> list[str]:
        if not os.path.isdir(self.home):
            return []
        return sorted(f[:-4] for f in os.listdir(self.home) if f.endswith(".key"))

    def list(self) -> list[StoredKey]:
        return [StoredKey(k.name, k.public, k.encrypted) for k in map(self._load, self.names())]

    def create(self, name: str, password: str, seed: bytes | None = None) -> StoredKey:
        if not NAME.match(name):
            raise KeystoreError(f"key name {name!r}: use letters, digits, '_', '.', '-' (up to 64)")
        if os.path.exists(self._path(name)):
            raise KeystoreError(f"a key named {name!r} already exists")
        key = SigningKey(seed) if seed is not None else SigningKey.generate()
        public = key.verify_key.encode().hex()
        if password:
            salt = utils.random(pwhash.argon2id.SALTBYTES)
            ops, mem = pwhash.argon2id.OPSLIMIT_INTERACTIVE, pwhash.argon2id.MEMLIMIT_INTERACTIVE
            box = secret.SecretBox(pwhash.argon2id.kdf(secret.SecretBox.KEY_SIZE, password.encode(), salt, ops, mem))
            record = _KeyFile(name, public, True, bytes(box.encrypt(bytes(key))).hex(), salt.hex(), ops, mem)
        else:
            record = _KeyFile(name, public, False, bytes(key).hex())
        os.makedirs(self.home, mode=0o700, exist_ok=True)
        replace_atomically(self._path(name), msgspec.json.encode(record))
        return StoredKey(name, public, bool(password))

    def signing_key(self, name: str, password: str) -> SigningKey:
        record = self._load(name)
        if not record.encrypted:
            return SigningKey(bytes.fromhex(record.private))
        if not password:
            raise KeystoreError(f"key {name!r} is encrypted: set WALLET_PASSWORD or enter the password")
        derived = pwhash.argon2id.kdf(
            secret.SecretBox.KEY_SIZE, password.encode(), bytes.fromhex(record.salt), record.opslimit, record.memlimit
        )
        try:
            seed = secret.SecretBox(derived).decrypt(bytes.fromhex(record.private))
        except CryptoError:
            raise KeystoreError(f"wrong password for key {name!r}") from None
        return SigningKey(seed)

    def delete(self, name: str) -> None:
        self._load(name)
        os.unlink(self._path(name))

    def public(self, name: str) -> str:
        return self._load(name).public
