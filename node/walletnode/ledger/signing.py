"""ed25519 signing and verification of commands (PyNaCl / libsodium)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .commands import Command


def verify(cluster_id: str, command: Command) -> bool:
    """True when the command's signature is its signer's over the canonical bytes for this cluster."""
    try:
        key = VerifyKey(bytes.fromhex(command.signer()))
        key.verify(command.signing_bytes(cluster_id), bytes.fromhex(command.signature))
    except (BadSignatureError, ValueError, TypeError):
        # ValueError/TypeError: a 32-byte string that is not a valid curve point.
        return False
    return True


def verify_all(cluster_id: str, commands: Iterable[Command]) -> list[bool]:
    return [verify(cluster_id, c) for c in commands]


def sign(key: SigningKey, cluster_id: str, command: Command) -> Command:
    """Return the command with its signature set; the signer field must be this key's public key."""
    signature = key.sign(command.signing_bytes(cluster_id)).signature.hex()
    return msgspec.structs.replace(command, signature=signature)


def public_hex(key: SigningKey) -> str:
    return key.verify_key.encode().hex()
