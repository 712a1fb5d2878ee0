"""Peer frames: sealed with the cluster secret, tamper-evident, never reusing a nonce."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walletnode.consensus.peer_cipher import InvalidMessage, PeerCipher

CIPHER = PeerCipher("cluster secret")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096))
def test_round_trip(data: bytes) -> None:
    assert CIPHER.open(CIPHER.seal(data)) == data


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_flipped_bit_is_refused(data: bytes, draw: st.DataObject) -> None:
    token = bytearray(CIPHER.seal(data))
    position = draw.draw(st.integers(min_value=0, max_value=len(token) * 8 - 1))
    token[position // 8] ^= 1 << (position % 8)
    with pytest.raises(InvalidMessage):
        CIPHER.open(bytes(token))


def test_another_secret_cannot_read_or_forge() -> None:
    token = CIPHER.seal(b"append_entries")
    with pytest.raises(InvalidMessage, match="wrong cluster secret"):
        PeerCipher("another secret").open(token)
    with pytest.raises(InvalidMessage):
        CIPHER.open(b"short")


def test_nonces_never_repeat_even_when_the_counter_wraps() -> None:
    cipher = PeerCipher("s")
    seen = {cipher._nonce() for _ in range(1000)}
    cipher._counter = iter([1 << 32, 0, 1])  # the counter's end: a new prefix is drawn
    seen |= {cipher._nonce() for _ in range(2)}
    assert len(seen) == 1002
