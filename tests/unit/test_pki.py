"""Certificates: what the CA issues verifies for the names asked, and renewal comes when it should."""

from __future__ import annotations

import datetime
import ssl

from walletnode import pki

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NAMES = ["wallet.ns.svc", "*.wallet-peers.ns.svc", "localhost"]
WEEK = datetime.timedelta(days=7)


def test_an_issued_certificate_is_for_its_names_signed_by_its_ca() -> None:
    ca = pki.make_ca("ns/wallet CA", now=NOW)
    cert = pki.issue(ca, NAMES, ["127.0.0.1"], days=90, now=NOW)
    info = pki.inspect(cert.cert)
    assert info.dns_names == tuple(NAMES) and info.issuer_cn == "ns/wallet CA"
    assert info.not_after == NOW + datetime.timedelta(days=90)
    assert pki.signed_by(cert.cert, ca.cert)
    assert not pki.signed_by(cert.cert, pki.make_ca("another CA", now=NOW).cert)


def test_openssl_loads_the_pair_and_trusts_it_through_the_ca(tmp_path: object) -> None:
    import pathlib

    base = pathlib.Path(str(tmp_path))
    ca = pki.make_ca("ca")
    pair = pki.issue(ca, ["localhost"])
    (base / "c.pem").write_bytes(pair.cert)
    (base / "k.pem").write_bytes(pair.key)
    (base / "ca.pem").write_bytes(ca.cert)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(base / "c.pem", base / "k.pem")
    client = ssl.create_default_context(cafile=str(base / "ca.pem"))
    assert client.get_ca_certs()[0]["subject"] == ((("commonName", "ca"),),)


def test_renewal_is_due_for_a_missing_stale_foreign_or_narrow_certificate_only() -> None:
    ca = pki.make_ca("ca", now=NOW)
    good = pki.issue(ca, NAMES, days=90, now=NOW).cert
    assert pki.needs_renewal(good, ca.cert, NAMES, WEEK, now=NOW) is None
    assert pki.needs_renewal(good, ca.cert, NAMES, WEEK, now=NOW + datetime.timedelta(days=82)) is None
    assert "expires" in str(pki.needs_renewal(good, ca.cert, NAMES, WEEK, now=NOW + datetime.timedelta(days=83)))
    assert pki.needs_renewal(None, ca.cert, NAMES, WEEK, now=NOW) == "no certificate yet"
    assert "does not parse" in str(pki.needs_renewal(b"junk", ca.cert, NAMES, WEEK, now=NOW))
    foreign = pki.issue(pki.make_ca("other", now=NOW), NAMES, now=NOW).cert
    assert "CA" in str(pki.needs_renewal(foreign, ca.cert, NAMES, WEEK, now=NOW))
    narrow = pki.issue(ca, NAMES[:1], now=NOW).cert
    assert "names" in str(pki.needs_renewal(narrow, ca.cert, NAMES, WEEK, now=NOW))


def test_a_long_common_name_is_cut_to_what_x509_allows() -> None:
    ca = pki.make_ca("n" * 200)
    assert len(pki.inspect(pki.issue(ca, ["x"]).cert).issuer_cn) == 64
