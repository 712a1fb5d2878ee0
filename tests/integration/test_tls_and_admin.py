"""TLS and the admin credential on real node processes.

Plain HTTP and a wrong CA are refused; a certificate rotated under write load fails no request;
admin calls without the admin key's signature, with the cluster secret, for another node, or
replayed are refused.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import msgspec
import pytest
from nacl.signing import SigningKey

from walletnode import pki
from walletnode.admin_auth import authorization
from walletnode.client import ClientError, ClusterUnavailable, WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster
from walletnode.tls import client_context

from .conftest import funded, wait_for


def served_certificate(cluster: LocalCluster, i: int) -> bytes:
    """The DER certificate node i presents in a new handshake now."""
    context = client_context(cluster.ca_file)
    with (
        socket.create_connection(("127.0.0.1", cluster.http_ports[i]), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_plain_http_and_a_wrong_ca_are_refused(shared_cluster: LocalCluster, tmp_path: os.PathLike[str]) -> None:
    plain = shared_cluster.urls[0].replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/v1/status", timeout=5)
    with pytest.raises(ClientError, match="--insecure"):
        WalletClient([plain])
    stranger = os.path.join(tmp_path, "stranger-ca.crt")
    with open(stranger, "wb") as f:
        f.write(pki.make_ca("not this cluster's CA").cert)
    with (
        WalletClient(shared_cluster.urls, deadline_s=2, ca=stranger) as client,
        pytest.raises(ClusterUnavailable, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.balances("ab" * 32)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(shared_cluster.admin_urls[0] + "/v1/status", verify=client_context(stranger), timeout=5)
    env = {**os.environ, **shared_cluster.client_env(), "WALLET_CA": stranger, "WALLET_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "walletnode.cli.walletctl", "balance", "ab" * 32],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4 and "CERTIFICATE_VERIFY_FAILED" in done.stderr, done.stderr


def test_a_node_will_not_serve_plain_http_unless_told(tmp_path: os.PathLike[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "walletnode.cli.node", "serve", "--id", "0", "--cluster", "127.0.0.1:1"],
        env={**os.environ, "WALLET_CLUSTER_SECRET": "x" * 32},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--tls-cert" in done.stderr, done.stderr


def test_certificate_rotation_under_write_load_fails_no_request(cluster: LocalCluster) -> None:
    """Writers on kept-alive connections and writers that handshake anew for every request, while
    the certificate and key are replaced three times; every request must succeed and every node
    must end up serving the last certificate."""
    alice, bob = SigningKey.generate(), SigningKey.generate()
    with WalletClient(cluster.urls, **cluster.trust) as client:
        funded(client, [alice], 10**9)
    failures: list[str] = []
    done: list[int] = []
    stop = threading.Event()

    def writer(fresh_handshakes: bool, node: int) -> None:
        limits = httpx.Limits(max_keepalive_connections=0) if fresh_handshakes else httpx.Limits()
        with httpx.Client(verify=client_context(cluster.ca_file), limits=limits, timeout=30) as http:
            while not stop.is_set():
                transfer = client.signed_transfer(alice, public_hex(bob), "USD", 1)  # the cluster id is known
                try:
                    r = http.post(cluster.urls[node] + "/v1/transfers", json={"commands": [_fields(transfer)]})
                    if r.status_code != 200 or r.json()["results"][0]["result"] != "ok":
                        failures.append(f"node {node}: {r.status_code} {r.text[:200]}")
                    else:
                        done.append(1)
                except httpx.HTTPError as exc:
                    failures.append(f"node {node}: {exc.__class__.__name__}: {exc}")

    threads = [threading.Thread(target=writer, args=(fresh, node)) for fresh in (True, False) for node in range(3)]
    for t in threads:
        t.start()
    try:
        before = {i: served_certificate(cluster, i) for i in range(3)}
        for _ in range(3):
            count = len(done)
            cluster.rotate_certificate()
            wait_for(
                lambda: all(served_certificate(cluster, i) != before[i] for i in range(3)),  # noqa: B023
                timeout=20,
                what="every node to serve the new certificate",
            )
            before = {i: served_certificate(cluster, i) for i in range(3)}
            wait_for(lambda: len(done) > count + 50, what="writes after the rotation")  # noqa: B023
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert failures == [], failures[:5]
    assert len(done) > 150
    print(f"{len(done)} transfers across three certificate rotations, none failed")
    with open(cluster.cert_file) as f:
        last = ssl.PEM_cert_to_DER_cert(f.read())
    assert all(served_certificate(cluster, i) == last for i in range(3))


def _fields(transfer: object) -> dict[str, object]:
    """A signed command as the API takes it (the route says its kind)."""
    fields = dict(msgspec.to_builtins(transfer))
    fields.pop("kind", None)
    return fields


def test_admin_calls_need_a_fresh_signature_by_the_admin_key_for_this_node(cluster: LocalCluster) -> None:
    leader = wait_for(cluster.leader, what="a leader")
    url = cluster.admin_urls[leader]
    with httpx.Client(verify=cluster.verify, timeout=30) as http:

        def post(headers: dict[str, str]) -> httpx.Response:
            return http.post(url + "/v1/leadership", content=b"{}", headers=headers)

        assert post({}).status_code == 401
        assert post({"Authorization": f"Bearer {cluster.secret}"}).status_code == 401, "the peer secret is no admin"
        with open(cluster.admin_key_file) as f:
            assert cluster.secret not in f.read()
        impostor = authorization(
            SigningKey.generate(), cluster.cluster_id, f"wallet-{leader}", "POST", "/v1/leadership", b"{}"
        )
        assert post({"Authorization": impostor}).status_code == 401
        follower = next(i for i in range(3) if i != leader)
        elsewhere = authorization(
            cluster.admin_key, cluster.cluster_id, f"wallet-{follower}", "POST", "/v1/leadership", b"{}"
        )
        refused = post({"Authorization": elsewhere})
        assert refused.status_code == 401 and "another node" in refused.json()["message"]
        stale = authorization(
            cluster.admin_key, cluster.cluster_id, f"wallet-{leader}", "POST", "/v1/leadership", b"{}", time.time() - 60
        )
        assert post({"Authorization": stale}).status_code == 401
        assert cluster.leader() == leader, "nothing refused moved leadership"
        assert http.post(cluster.urls[leader] + "/v1/leadership", content=b"{}").status_code == 404, (
            "not on the client port"
        )

        captured = authorization(
            cluster.admin_key, cluster.cluster_id, f"wallet-{leader}", "POST", "/v1/leadership", b"{}"
        )
        first = post({"Authorization": captured})
        assert first.status_code == 200, first.text
        new_leader = wait_for(
            lambda: (lambda now: now if now not in (None, leader) else None)(cluster.leader()), what="a new leader"
        )
        replayed = post({"Authorization": captured})
        assert replayed.status_code == 401 and "replayed" in replayed.json()["message"]
        assert wait_for(cluster.leader, what="a leader") == new_leader


def test_admin_routes_answer_bad_input_with_4xx(cluster: LocalCluster) -> None:
    leader = wait_for(cluster.leader, what="a leader")
    for method, path, body in [
        ("POST", "/v1/members", b"{not json"),
        ("POST", "/v1/members", b'{"address": 7}'),
        ("POST", "/v1/members", b'{"address": "nohost", "member": 3, "extra": 1}'),
        ("DELETE", "/v1/members/not-an-address", b""),
    ]:
        r = cluster.admin_request(leader, method, path, content=body)
        assert 400 <= r.status_code < 500 and "error" in r.json(), (path, body, r.text)
