"""A WalletCluster's credentials: its CA, the nodes' server certificate, and the admin key.

`settle` takes what the cluster's Secrets hold now and returns what they must hold, issuing what
is missing or due (a new CA only when there is none; a server certificate when it is missing, not
signed by the CA, does not name the cluster's services, or expires within `renewBeforeDays`).
Only key generation is random here; reading and writing the Secrets is the handlers' job.

With `spec.tls.issuerRef`, cert-manager issues the server certificate into the same Secret and
the operator issues nothing: it only publishes the CA that cert-manager put there.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from nacl.signing import SigningKey

from walletnode import pki

from .spec import ClusterRef, Spec, peer_service_name

CA_CERT, CA_KEY = "tls.crt", "tls.key"  # in the CA Secret (the operator's alone)
SERVER_CERT, SERVER_KEY, SERVER_CA = "tls.crt", "tls.key", "ca.crt"  # in the server Secret (mounted)
ADMIN_KEY = "ed25519-seed"  # in the admin Secret (the operator's alone)
MAX_MEMBERS = 7  # the CRD's largest replicas: pods <name>-0 .. <name>-6

SecretData = dict[str, bytes]


@dataclass(frozen=True)
class Credentials:
    ca: pki.KeyPair | None  # the operator's CA; None with cert-manager
    server: pki.KeyPair | None  # the nodes' certificate; None with cert-manager (it writes the Secret)
    ca_bundle: bytes | None  # what clients and the operator trust; None until cert-manager has issued
    admin: SigningKey
    not_after: datetime.datetime | None  # of the server certificate, when known

    @property
    def admin_public(self) -> str:
        return bytes(self.admin.verify_key).hex()


def pod_host(ref: ClusterRef, pod: str) -> str:
    """The name a pod's certificate is checked against (its DNS name behind the peer Service)."""
    return f"{pod}.{peer_service_name(ref)}.{ref.namespace}.svc"


def server_names(ref: ClusterRef) -> list[str]:
    """Every name a client may use for a member: the client Service, the peer Service, each pod
    behind it, with and without the namespace, and localhost (for `kubectl exec` and port-forwards).
    Pods are named by wildcards where TLS allows one (OpenSSL matches `*` only with two labels after
    it), so scaling needs no new certificate; the short `<pod>.<peers>` forms are listed one by one."""
    names = []
    for service in (ref.name, peer_service_name(ref)):
        names += [service, f"{service}.{ref.namespace}", f"{service}.{ref.namespace}.svc"]
        names.append(f"{service}.{ref.namespace}.svc.cluster.local")
    peers = peer_service_name(ref)
    for domain in (
        f"{peers}.{ref.namespace}",
        f"{peers}.{ref.namespace}.svc",
        f"{peers}.{ref.namespace}.svc.cluster.local",
    ):
        names.append(f"*.{domain}")
    names += [f"{ref.name}-{i}.{peers}" for i in range(MAX_MEMBERS)]
    return [*names, "localhost"]


def settle(
    ref: ClusterRef,
    spec: Spec,
    ca_secret: SecretData | None,
    server_secret: SecretData | None,
    admin_secret: SecretData | None,
    now: datetime.datetime,
) -> tuple[Credentials, list[str]]:
    """What the Secrets must hold, and a sentence for each thing issued (for an Event; no key in it)."""
    issued: list[str] = []
    admin_seed = (admin_secret or {}).get(ADMIN_KEY)
    admin = SigningKey(bytes.fromhex(admin_seed.decode())) if admin_seed else SigningKey.generate()
    if not admin_seed:
        issued.append("generated the admin key (its public half goes to the nodes)")
    server_secret = server_secret or {}
    if spec.issuer_ref is not None:
        bundle = server_secret.get(SERVER_CA) or None
        cert = server_secret.get(SERVER_CERT)
        not_after = pki.inspect(cert).not_after if cert else None
        return Credentials(None, None, bundle, admin, not_after), issued
    if ca_secret and ca_secret.get(CA_CERT) and ca_secret.get(CA_KEY):
        ca = pki.KeyPair(ca_secret[CA_CERT], ca_secret[CA_KEY])
    else:
        ca = pki.make_ca(f"walletcluster {ref.namespace}/{ref.name} CA", now=now)
        issued.append("created the cluster's CA")
    names = server_names(ref)
    current = server_secret.get(SERVER_CERT)
    why = pki.needs_renewal(current, ca.cert, names, datetime.timedelta(days=spec.renew_before_days), now=now)
    if why is None and current is not None and server_secret.get(SERVER_KEY):
        server = pki.KeyPair(current, server_secret[SERVER_KEY])
    else:
        server = pki.issue(ca, names, ["127.0.0.1"], days=spec.certificate_days, now=now)
        issued.append(
            f"issued the server certificate ({why or 'its key was missing'}); "
            f"valid until {pki.inspect(server.cert).not_after:%Y-%m-%dT%H:%M:%SZ}"
        )
    return Credentials(ca, server, ca.cert, admin, pki.inspect(server.cert).not_after), issued
