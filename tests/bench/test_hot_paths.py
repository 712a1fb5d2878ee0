"""pytest-benchmark of the write path's pure hot spots; `make test` runs them once each (quick mode)."""

from __future__ import annotations

import msgspec
import pytest
from nacl.signing import SigningKey

from walletnode.ledger.commands import CreateCurrency, Entry, Mint, Transfer, decode_entry, encode_entry
from walletnode.ledger.signing import public_hex, sign
from walletnode.ledger.state import Ledger, configure_entry
from walletnode.server.verifier import verify_commands

CLUSTER = "bench"
MINTER = SigningKey(bytes([3]) * 32)
SENDERS = [SigningKey(bytes([10 + i]) * 32) for i in range(16)]
BATCH = 1000


@pytest.fixture(scope="module")
def transfers() -> list[Transfer]:
    out = []
    for i in range(BATCH):
        sender = SENDERS[i % len(SENDERS)]
        t = Transfer(
            id=f"{i:032x}",
            from_=public_hex(sender),
            to=public_hex(SENDERS[(i + 1) % len(SENDERS)]),
            currency="USD",
            amount=1,
            signature="0" * 128,
        )
        out.append(sign(sender, CLUSTER, t))
    return out


def funded_ledger() -> Ledger:
    ledger = Ledger()
    pk = public_hex(MINTER)
    ledger.apply_entry_bytes(encode_entry(configure_entry([pk])))
    setup: list[CreateCurrency | Mint] = [
        CreateCurrency(id="f" * 32, minter=pk, code="USD", scale=2, signature="0" * 128)
    ]
    setup += [
        Mint(id=f"e{i:031x}", minter=pk, to=public_hex(s), currency="USD", amount=10**12, signature="0" * 128)
        for i, s in enumerate(SENDERS)
    ]
    ledger.apply_entry_bytes(encode_entry(Entry(commands=tuple(setup))))
    return ledger


def test_verify_a_batch(benchmark, transfers: list[Transfer]) -> None:  # type: ignore[no-untyped-def]
    assert all(benchmark(verify_commands, CLUSTER, transfers))


def test_encode_and_decode_an_entry(benchmark, transfers: list[Transfer]) -> None:  # type: ignore[no-untyped-def]
    entry = Entry(commands=tuple(transfers))
    assert benchmark(lambda: decode_entry(encode_entry(entry))) == entry


def test_apply_a_batch(benchmark, transfers: list[Transfer]) -> None:  # type: ignore[no-untyped-def]
    data = encode_entry(Entry(commands=tuple(transfers)))
    results = benchmark.pedantic(
        lambda ledger: ledger.apply_entry_bytes(data), setup=lambda: ((funded_ledger(),), {}), rounds=5
    )
    assert results == ["ok"] * BATCH


def test_decode_a_json_request(benchmark, transfers: list[Transfer]) -> None:  # type: ignore[no-untyped-def]
    from walletnode.server.schemas import TransferBatch

    body = msgspec.json.encode(
        {"commands": [{k: v for k, v in msgspec.to_builtins(t).items() if k != "kind"} for t in transfers]}
    )
    assert len(benchmark(msgspec.json.decode, body, type=TransferBatch).commands) == BATCH
