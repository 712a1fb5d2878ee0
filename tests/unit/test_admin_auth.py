"""The admin credential: only a fresh, unused request signed with the admin key for this node passes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from walletnode.admin_auth import AdminVerifier, authorization, public_hex

ADMIN = SigningKey(bytes([3]) * 32)
BODY = b'{"address":"wallet-3.wallet-peers.ns.svc:7700","member":3}'


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(clock: Clock, audience: str = "wallet-0") -> AdminVerifier:
    return AdminVerifier(public_hex(ADMIN), "ns/wallet", audience, window_s=30, clock=clock)


def signed(clock: Clock, key: SigningKey = ADMIN, audience: str = "wallet-0", **fields: object) -> str:
    args = {"method": "POST", "path": "/v1/members", "body": BODY, **fields}
    return authorization(
        key,
        "ns/wallet",
        audience,
        str(args["method"]),
        str(args["path"]),
        bytes(args["body"]),
        clock(),  # type: ignore[arg-type]
    )


def test_a_signed_request_passes_once_and_its_replay_is_refused() -> None:
    clock = Clock()
    check = verifier(clock)
    header = signed(clock)
    assert check.check(header, "POST", "/v1/members", BODY) is None
    clock.now += 1
    assert "replayed" in str(check.check(header, "POST", "/v1/members", BODY))


def test_a_request_older_than_the_window_is_refused_even_after_its_nonce_is_forgotten() -> None:
    clock = Clock()
    check = verifier(clock)
    header = signed(clock)
    assert check.check(header, "POST", "/v1/members", BODY) is None
    clock.now += 31
    assert "timestamp" in str(check.check(header, "POST", "/v1/members", BODY))
    clock.now += 1000
    assert "timestamp" in str(check.check(header, "POST", "/v1/members", BODY))


def test_a_request_signed_before_the_node_started_is_refused() -> None:
    """The nonce memory starts empty with the process: what was signed before cannot be checked."""
    clock = Clock()
    header = signed(clock)
    clock.now += 1
    assert "before this node started" in str(verifier(clock).check(header, "POST", "/v1/members", BODY))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer the-cluster-secret-that-used-to-work",
        "WalletAdmin ts=1,nonce=00,sig=00",
    ],
)
def test_no_credential_or_the_old_bearer_secret_is_refused(header: str) -> None:
    assert verifier(Clock()).check(header, "POST", "/v1/members", BODY) is not None


def test_another_key_or_another_node_or_another_cluster_is_refused() -> None:
    clock = Clock()
    check = verifier(clock)
    assert "signature" in str(check.check(signed(clock, SigningKey.generate()), "POST", "/v1/members", BODY))
    assert "signature" in str(check.check(signed(clock, audience="wallet-1"), "POST", "/v1/members", BODY))
    other_cluster = AdminVerifier(public_hex(ADMIN), "other/wallet", "wallet-0", clock=clock)
    assert other_cluster.check(signed(clock), "POST", "/v1/members", BODY) is not None


@given(
    method=st.sampled_from(["POST", "DELETE", "GET", "PUT"]),
    path=st.sampled_from(["/v1/members", "/v1/leadership", "/v1/members/x:1", "/v1/members?x=1"]),
    body=st.binary(max_size=64),
)
def test_any_change_to_method_path_or_body_voids_the_signature(method: str, path: str, body: bytes) -> None:
    clock = Clock()
    header = signed(clock)
    outcome = verifier(clock).check(header, method, path, body)
    if (method, path, body) == ("POST", "/v1/members", BODY):
        assert outcome is None
    else:
        assert outcome is not None and "signature" in outcome
