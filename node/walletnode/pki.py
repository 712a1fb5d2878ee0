"""Certificates for the API's TLS: a cluster CA, server certificates it signs, and when to renew.

Pure functions of their inputs and the clock they are given (no files, no network): the operator
and `make run` call them and store the PEM where the nodes and clients read it. Keys are ECDSA
P-256: small, fast to handshake, and accepted by every TLS stack we meet.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 90
RENEW_BEFORE_DAYS = 7
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate clocks a little behind the issuer's


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert: bytes
    key: bytes


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8, pem = serialization.PrivateFormat.PKCS8, serialization.Encoding.PEM
    return key.private_bytes(pem, pkcs8, serialization.NoEncryption())


def make_ca(common_name: str, days: int = CA_DAYS, now: datetime.datetime | None = None) -> KeyPair:
    """A self-signed CA that may sign server certificates (and nothing below them). X.509 allows a
    common name of at most 64 characters: a longer one is cut."""
    now = now or _now()
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: KeyPair,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    days: int = SERVER_DAYS,
    now: datetime.datetime | None = None,
) -> KeyPair:
    """A server certificate for `dns_names` and `ip_addresses`, signed by `ca`."""
    assert dns_names or ip_addresses, "a server certificate names at least one host"
    now = now or _now()
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _new_key()
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (list(dns_names) or list(ip_addresses))[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class CertInfo:
    not_after: datetime.datetime
    dns_names: tuple[str, ...]
    issuer_cn: str


def inspect(cert_pem: bytes) -> CertInfo:
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    cn = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertInfo(cert.not_valid_after_utc, dns, str(cn[0].value) if cn else "")


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether `ca_pem` signed `cert_pem` (a renewed or replaced CA makes old certificates stale)."""
    cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def needs_renewal(
    cert_pem: bytes | None,
    ca_pem: bytes,
    dns_names: Sequence[str],
    renew_before: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> str | None:
    """Why a server certificate must be (re)issued now, or None while it is good."""
    if not cert_pem:
        return "no certificate yet"
    try:
        info = inspect(cert_pem)
    except ValueError:
        return "the stored certificate does not parse"
    if not signed_by(cert_pem, ca_pem):
        return "not signed by the cluster's CA"
    if set(dns_names) - set(info.dns_names):
        return "its names do not cover the cluster's services"
    if info.not_after - (now or _now()) <= renew_before:
        return f"it expires at {info.not_after:%Y-%m-%dT%H:%M:%SZ}"
    return None
