"""Peer messages: sealed with the cluster secret, tamper-evident, never reusing a nonce."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walletnode.consensus.peer_cipher import InvalidMessage, PeerCipher

CIPHER = PeerCipher("cluster secret")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=2**63 - 1))
def test_round_trip_and_timestamp(data: bytes, timestamp: int) -> None:
    token = CIPHER.encrypt_at_time(data, timestamp)
    assert CIPHER.extract_timestamp(token) == timestamp
    assert CIPHER.decrypt(token) == data


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_flipped_bit_is_refused(data: bytes, draw: st.DataObject) -> None:
    token = bytearray(CIPHER.encrypt_at_time(data, 7))
    position = draw.draw(st.integers(min_value=0, max_value=len(token) * 8 - 1))
    token[position // 8] ^= 1 << (position % 8)
    with pytest.raises(InvalidMessage):
        CIPHER.decrypt(bytes(token))


def test_another_secret_cannot_read_or_forge() -> None:
    token = CIPHER.encrypt_at_time(b"append_entries", 1)
    with pytest.raises(InvalidMessage, match="wrong cluster secret"):
        PeerCipher("another secret").decrypt(token)
    with pytest.raises(InvalidMessage):
        CIPHER.decrypt(b"short")


def test_nonces_never_repeat_even_when_the_counter_wraps() -> None:
    cipher = PeerCipher("s")
    seen = {cipher._nonce() for _ in range(1000)}
    cipher._counter = iter([1 << 32, 0, 1])  # the counter's end: a new prefix is drawn
    seen |= {cipher._nonce() for _ in range(2)}
    assert len(seen) == 1002
