"""The node's own ed25519 identity: created on first start, kept in the data directory.

It signs attested reads, so a client can tell which replica said what.
"""

from __future__ import annotations

import hashlib
import os
import struct

from nacl.signing import SigningKey

from ..consensus.durable import replace_atomically

ATTEST_DOMAIN = b"walletcluster/v1 attest\x00"


def load_or_create(data_dir: str) -> SigningKey:
    path = os.path.join(data_dir, "node.key")
    try:
        with open(path, "rb") as f:
            return SigningKey(f.read())
    except FileNotFoundError:
        key = SigningKey.generate()
        replace_atomically(path, bytes(key))
        return key


def attestation_bytes(cluster_id: str, node: str, index: int, audit_hash: bytes, answer: bytes) -> bytes:
    """What an attestation signs: the answer's hash bound to the replica, cluster and position."""
    cid, nid = cluster_id.encode(), node.encode()
    return b"".join(
        (
            ATTEST_DOMAIN,
            bytes((len(cid),)),
            cid,
            bytes((len(nid),)),
            nid,
            struct.pack(">Q", index),
            audit_hash,
            hashlib.sha256(answer).digest(),
        )
    )
