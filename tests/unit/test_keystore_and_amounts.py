"""The keystore (encryption, errors, atomic files) and display-amount conversion."""

from __future__ import annotations

import os
import pathlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from walletnode.client import to_display, to_minor
from walletnode.keystore import Keystore, KeystoreError


def test_encrypted_key_round_trip_and_wrong_password(tmp_path: pathlib.Path) -> None:
    store = Keystore(str(tmp_path))
    stored = store.create("alice", "correct horse")
    assert stored.encrypted
    raw = (tmp_path / "alice.key").read_text()
    key = store.signing_key("alice", "correct horse")
    assert key.verify_key.encode().hex() == stored.public
    assert bytes(key).hex() not in raw, "the private key must not be stored in the clear"
    with pytest.raises(KeystoreError, match="wrong password"):
        store.signing_key("alice", "wrong")
    with pytest.raises(KeystoreError, match="encrypted"):
        store.signing_key("alice", "")


def test_empty_password_stores_in_the_clear(tmp_path: pathlib.Path) -> None:
    store = Keystore(str(tmp_path))
    assert not store.create("bob", "").encrypted
    assert store.signing_key("bob", "anything-ignored").verify_key.encode().hex() == store.public("bob")


def test_failures_lose_nothing(tmp_path: pathlib.Path) -> None:
    store = Keystore(str(tmp_path))
    first = store.create("carol", "")
    with pytest.raises(KeystoreError, match="already exists"):
        store.create("carol", "")
    assert store.public("carol") == first.public, "an existing key is never overwritten"
    with pytest.raises(KeystoreError, match="use letters"):
        store.create("../evil", "")
    (tmp_path / "broken.key").write_text("{not json")
    with pytest.raises(KeystoreError, match="damaged"):
        store.public("broken")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")], "no half-written files left behind"
    store.delete("carol")
    with pytest.raises(KeystoreError, match="no key named"):
        store.public("carol")


@pytest.mark.parametrize(
    ("text", "scale", "minor"),
    [("12.50", 2, 1250), ("0.01", 2, 1), ("7", 0, 7), ("1e3", 2, 100000), ("1000.00", 2, 100000)],
)
def test_to_minor(text: str, scale: int, minor: int) -> None:
    assert to_minor(text, scale) == minor


@pytest.mark.parametrize("text", ["1.001", "abc", "nan", "inf", "", "-5"])
def test_to_minor_rejects_what_it_cannot_represent_exactly(text: str) -> None:
    with pytest.raises(ValueError):
        to_minor(text, 2)


@given(st.integers(0, 2**63 - 1), st.integers(0, 18))
def test_display_round_trips(minor: int, scale: int) -> None:
    shown = to_display(minor, scale)
    assert to_minor(shown, scale) == minor
    assert Decimal(shown).as_tuple().exponent == -scale or scale == 0
