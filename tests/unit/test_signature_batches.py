"""Batched signature checks (server/verifier.py over the native walletcluster_sigs module).

A command's verdict must never depend on what it was batched with, must agree with libsodium's on
honest and tampered signatures, and must refuse what anyone could have signed (a weak key).
"""

from __future__ import annotations

import asyncio

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from walletcluster_sigs import verify_groups

from walletnode.ledger.commands import Transfer
from walletnode.ledger.signing import public_hex, sign
from walletnode.server.verifier import Verifier

# The group order l: S + l encodes the same scalar as S, non-canonically.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
KEYS = [SigningKey(bytes([i]) * 32) for i in range(1, 9)]
BOB = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"


def libsodium_accepts(item: tuple[bytes, bytes, bytes]) -> bool:
    key, signature, message = item
    try:
        VerifyKey(key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def flip(data: bytes, bit: int) -> bytes:
    bit %= 8 * len(data)
    return data[: bit // 8] + bytes((data[bit // 8] ^ (1 << bit % 8),)) + data[bit // 8 + 1 :]


@st.composite
def items(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """A signed message, honest or with one bit of its key, signature or message flipped."""
    key = draw(st.sampled_from(KEYS))
    message = draw(st.binary(min_size=0, max_size=200))
    item = (bytes(key.verify_key), key.sign(message).signature, message)
    part = draw(st.sampled_from(["none", "key", "signature", "message"]))
    if part == "none" or (part == "message" and not message):
        return item
    index = ["key", "signature", "message"].index(part)
    changed = list(item)
    changed[index] = flip(item[index], draw(st.integers(0, 8 * 256)))
    return changed[0], changed[1], changed[2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(items(), max_size=6), max_size=6))
def test_verdicts_agree_with_libsodium_however_they_are_batched(groups: list[list[tuple[bytes, bytes, bytes]]]) -> None:
    expected = [[libsodium_accepts(item) for item in group] for group in groups]
    assert verify_groups(groups) == expected
    # Each item alone, and everything as one group: the same verdicts.
    assert [[verify_groups([[item]])[0][0] for item in group] for group in groups] == expected
    assert verify_groups([[item for group in groups for item in group]]) == [[f for g in expected for f in g]]


def test_a_weak_key_is_refused_although_its_equation_holds() -> None:
    """For the identity point as key, R of order 4 and S = 0, [8]([S]B - R - [k]A) is the identity:
    plain ZIP-215 accepts this signature for any message, made without any secret."""
    identity = bytes([1]) + bytes(31)
    order_four = bytes(32)  # y = 0: the points (+-sqrt(-1), 0)
    forged = [(identity, order_four + bytes(32), message) for message in (b"pay me", b"and me")]
    assert verify_groups([forged]) == [[False, False]]
    assert not any(libsodium_accepts(item) for item in forged)


def test_a_non_canonical_s_is_refused() -> None:
    key = KEYS[0]
    signature = key.sign(b"m").signature
    s = int.from_bytes(signature[32:], "little") + GROUP_ORDER
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert verify_groups([[(bytes(key.verify_key), signature, b"m"), (bytes(key.verify_key), malleated, b"m")]]) == [
        [True, False]
    ]


def transfers(n: int, start: int = 0) -> list[Transfer]:
    key = KEYS[0]
    return [
        sign(
            key,
            "demo",
            Transfer(
                id=f"{start + i:032x}", from_=public_hex(key), to=BOB, currency="USD", amount=i + 1, signature="0" * 128
            ),
        )
        for i in range(n)
    ]


def test_requests_checked_together_each_get_their_own_flags() -> None:
    """Requests that arrive while a batch is checked are checked together; a forgery in one of them
    marks only its own command."""
    requests = [transfers(40, start=100 * r) for r in range(12)]
    forged = {(2, 0), (2, 39), (7, 13)}
    for r, i in forged:
        requests[r][i] = msgspec.structs.replace(requests[r][i], amount=requests[r][i].amount + 1)

    async def main() -> list[list[bool]]:
        verifier = Verifier("demo", threads=1)
        try:
            return list(await asyncio.gather(*(verifier.verify(req) for req in requests)))
        finally:
            verifier.close()

    flags = asyncio.run(main())
    assert flags == [[(r, i) not in forged for i in range(40)] for r in range(12)]


def test_a_command_signed_for_another_cluster_is_refused() -> None:
    async def main() -> tuple[list[bool], list[bool], list[bool]]:
        verifier = Verifier("demo", threads=2)
        try:
            commands = transfers(3)
            other = Verifier("other", threads=1)
            try:
                return await verifier.verify(commands), await other.verify(commands), await verifier.verify([])
            finally:
                other.close()
        finally:
            verifier.close()

    assert asyncio.run(main()) == ([True] * 3, [False] * 3, [])
