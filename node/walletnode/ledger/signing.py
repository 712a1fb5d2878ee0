"""ed25519 signing of commands (PyNaCl / libsodium); nodes check signatures in server/verifier.py."""

from __future__ import annotations

import msgspec
from nacl.signing import SigningKey

from .commands import Command


def sign(key: SigningKey, cluster_id: str, command: Command) -> Command:
    """Return the command with its signature set; the signer field must be this key's public key."""
    signature = key.sign(command.signing_bytes(cluster_id)).signature.hex()
    return msgspec.structs.replace(command, signature=signature)


def public_hex(key: SigningKey) -> str:
    return key.verify_key.encode().hex()
