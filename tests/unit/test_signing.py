"""The signing format is a public contract: docs/api.md's worked example must match the code."""

from __future__ import annotations

import asyncio
import pathlib
import re

from nacl.signing import SigningKey

from walletnode.ledger.commands import CreateCurrency, Mint, Transfer
from walletnode.ledger.signing import public_hex, sign
from walletnode.server.verifier import Verifier

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "api.md"
ALICE = SigningKey(bytes(range(32)))
BOB = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"


def example() -> Transfer:
    return Transfer(
        id="000102030405060708090a0b0c0d0e0f",
        from_=public_hex(ALICE),
        to=BOB,
        currency="USD",
        amount=25000,
        signature="0" * 128,
    )


def doc_value(label: str) -> str:
    match = re.search(rf"{label}:\s*\n+\s*```\n([0-9a-f\s]+)```", DOC.read_text())
    assert match, f"docs/api.md lacks the '{label}' block"
    return "".join(match.group(1).split())


def test_worked_example_signing_bytes_match_the_docs() -> None:
    assert example().signing_bytes("demo").hex() == doc_value("Signing bytes")


def test_worked_example_signature_matches_the_docs() -> None:
    assert sign(ALICE, "demo", example()).signature == doc_value("Signature")


def verify(cluster_id: str, command: Transfer | Mint | CreateCurrency) -> bool:
    verifier = Verifier(cluster_id, threads=1)
    try:
        return asyncio.run(verifier.verify([command])) == [True]
    finally:
        verifier.close()


def test_signature_is_bound_to_cluster_and_fields() -> None:
    signed = sign(ALICE, "demo", example())
    assert verify("demo", signed)
    assert not verify("other-cluster", signed)
    for change in ({"amount": 25001}, {"to": "00" * 32}, {"currency": "EUR"}, {"id": "ff" * 16}):
        assert not verify(
            "demo", type(signed)(**{**{f: getattr(signed, f) for f in signed.__struct_fields__}, **change})
        )


def test_kinds_are_domain_separated() -> None:
    """A mint and a transfer with identical fields sign different bytes."""
    key = public_hex(ALICE)
    mint = Mint(id="00" * 16, minter=key, to=BOB, currency="USD", amount=1, signature="0" * 128)
    transfer = Transfer(id="00" * 16, from_=key, to=BOB, currency="USD", amount=1, signature="0" * 128)
    create = CreateCurrency(id="00" * 16, minter=key, code="USD", scale=2, signature="0" * 128)
    assert len({mint.signing_bytes("c"), transfer.signing_bytes("c"), create.signing_bytes("c")}) == 3


def test_a_key_that_is_not_a_curve_point_does_not_verify() -> None:
    bogus = Transfer(id="00" * 16, from_="ff" * 32, to=BOB, currency="USD", amount=1, signature="ab" * 64)
    assert not verify("demo", bogus)
