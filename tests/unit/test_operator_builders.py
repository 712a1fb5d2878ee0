"""The operator's pure parts: manifests from a spec, the one-step-at-a-time plan, status and metrics."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest

from walletoperator import builders, credentials
from walletoperator.metrics import PHASES, Phases
from walletoperator.plan import Condition, Observed, PodView, RaftView, decide, status_conditions
from walletoperator.spec import ClusterRef, Spec

REF = ClusterRef("wallet", "prod", "uid-123")
MINTER = "ab" * 32


def spec(**kw: object) -> Spec:
    return Spec.parse({"minters": [MINTER], **kw})


NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
CREDS, _ = credentials.settle(REF, spec(), None, None, None, NOW)


def by_kind(manifests: list[dict]) -> dict[str, dict]:  # type: ignore[type-arg]
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in manifests}


def test_every_owned_object_is_built_and_owned() -> None:
    objs = by_kind(builders.desired(REF, spec(), "s3cret", 3, 3, CREDS))
    assert set(objs) == {
        "Secret/wallet-secret",
        "Secret/wallet-admin",
        "Secret/wallet-ca",
        "Secret/wallet-tls",
        "ConfigMap/wallet-ca",
        "ConfigMap/wallet-config",
        "ServiceAccount/wallet",
        "Service/wallet-peers",
        "Service/wallet",
        "PodDisruptionBudget/wallet",
        "NetworkPolicy/wallet",
        "StatefulSet/wallet",
    }
    for obj in objs.values():
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == "uid-123" and owner["controller"] and owner["kind"] == "WalletCluster"
        assert obj["metadata"]["namespace"] == "prod"
    assert builders.desired(REF, spec(), "s3cret", 3, 3, CREDS) == builders.desired(REF, spec(), "s3cret", 3, 3, CREDS)


def test_statefulset_shape() -> None:
    sts = builders.stateful_set(
        REF, spec(storage={"size": "2Gi", "reclaimPolicy": "Delete", "storageClassName": "fast"}), 4, 3
    )
    s = sts["spec"]
    assert s["replicas"] == 4 and s["serviceName"] == "wallet-peers"
    assert s["podManagementPolicy"] == "Parallel" and s["updateStrategy"] == {"type": "OnDelete"}
    assert s["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Delete"}
    claim = s["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "2Gi" and claim["storageClassName"] == "fast"
    (container,) = s["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--replicas") + 1] == "3", "pods beyond the membership start as joiners"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTPS"}
    assert args[args.index("--tls-cert") + 1] == "/etc/walletcluster/tls/tls.crt"
    assert args[args.index("--admin-http") + 1] == "0.0.0.0:8701"
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]


def test_with_spec_backup_the_nodes_archive_with_the_users_secret_and_ca() -> None:
    backup = {
        "endpoint": "https://s3.example.com",
        "bucket": "ledgers",
        "credentialsSecret": {"name": "s3-keys", "accessKeyIdKey": "id"},
        "caSecret": {"name": "s3-ca"},
    }
    sts = builders.stateful_set(REF, spec(backup=backup), 3, 3)
    pod_spec = sts["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["WALLET_BACKUP_ENDPOINT"] == "https://s3.example.com" and env["WALLET_BACKUP_BUCKET"] == "ledgers"
    assert env["WALLET_BACKUP_PREFIX"] == "prod/wallet", "each ledger its own prefix by default"
    assert env["WALLET_ARCHIVE_EVERY_S"] == "2" and env["WALLET_BACKUP_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-keys", "key": "id"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-keys", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert env["WALLET_BACKUP_CA"] == "/etc/walletcluster/backup-ca/ca.crt"
    assert {"name": "backup-ca", "secret": {"secretName": "s3-ca"}} in pod_spec["volumes"]
    assert {"name": "backup-ca", "mountPath": "/etc/walletcluster/backup-ca", "readOnly": True} in container[
        "volumeMounts"
    ]
    # Turning backups on or changing where they go restarts the pods (the node reads them at start).
    assert builders.config_hash(spec(backup=backup)) != builders.config_hash(spec())
    assert builders.config_hash(spec(backup={**backup, "bucket": "other"})) != builders.config_hash(spec(backup=backup))
    plain = builders.stateful_set(REF, spec(), 3, 3)["spec"]["template"]["spec"]
    assert not [e for e in plain["containers"][0]["env"] if "BACKUP" in e["name"] or e["name"].startswith("AWS_")]
    assert "backup-ca" not in {v["name"] for v in plain["volumes"]}


@pytest.mark.parametrize(("replicas", "quorum"), [(1, 1), (3, 2), (5, 3), (7, 4)])
def test_pdb_preserves_the_quorum(replicas: int, quorum: int) -> None:
    assert builders.pod_disruption_budget(REF, spec(replicas=replicas))["spec"]["minAvailable"] == quorum


def test_raft_port_only_from_peers_and_admin_port_only_from_the_operator() -> None:
    rules = builders.network_policy(REF)["spec"]["ingress"]
    raft = next(r for r in rules if r["ports"][0]["port"] == 7700)
    assert raft["from"] == [{"podSelector": {"matchLabels": builders.selector(REF)}}]
    admin = next(r for r in rules if r["ports"][0]["port"] == 8701)
    (operator,) = admin["from"]
    assert operator["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    api = next(r for r in rules if r["ports"][0]["port"] == 8700)
    assert "from" not in api


def test_credentials_keep_what_is_good_and_renew_what_is_due() -> None:
    stored = by_kind(builders.desired(REF, spec(), "s3cret", 3, 3, CREDS))

    def data(name: str) -> dict[str, bytes]:
        import base64

        return {k: base64.b64decode(v) for k, v in stored[f"Secret/{name}"]["data"].items()}

    ca, tls, admin = data("wallet-ca"), data("wallet-tls"), data("wallet-admin")
    again, issued = credentials.settle(REF, spec(), ca, tls, admin, NOW + datetime.timedelta(days=82))
    assert issued == [] and again == CREDS, "nothing is reissued while the certificate is good"
    renewed, issued = credentials.settle(REF, spec(), ca, tls, admin, NOW + datetime.timedelta(days=83, hours=1))
    assert len(issued) == 1 and "expires" in issued[0]
    assert renewed.ca == CREDS.ca and renewed.admin == CREDS.admin and renewed.server != CREDS.server
    short, _ = credentials.settle(REF, spec(tls={"certificateDays": 30, "renewBeforeDays": 3}), ca, {}, admin, NOW)
    assert short.not_after == NOW + datetime.timedelta(days=30)
    assert not any(b"PRIVATE" in note.encode() for note in issued)


def test_no_private_key_reaches_a_configmap_or_a_pod_spec() -> None:
    objs = builders.desired(REF, spec(), "s3cret", 3, 3, CREDS)
    admin_seed = bytes(CREDS.admin).hex()
    assert CREDS.ca is not None and CREDS.server is not None
    for obj in objs:
        if obj["kind"] in ("Secret",):
            continue
        text = repr(obj)
        assert "PRIVATE KEY" not in text and admin_seed not in text and "s3cret" not in text, obj["kind"]
    config = by_kind(objs)["ConfigMap/wallet-config"]["data"]
    assert config["admin-public-key"] == CREDS.admin_public
    volumes = by_kind(objs)["StatefulSet/wallet"]["spec"]["template"]["spec"]["volumes"]
    mounted = {v["secret"]["secretName"] for v in volumes if "secret" in v}
    assert mounted == {"wallet-secret", "wallet-tls"}, "the CA key and the admin key are never mounted"


def test_with_a_cert_manager_issuer_the_operator_asks_for_a_certificate_instead() -> None:
    wanted = spec(tls={"issuerRef": {"name": "corp-ca"}})
    creds, _ = credentials.settle(REF, wanted, None, None, None, NOW)
    assert creds.ca is None and creds.ca_bundle is None
    objs = by_kind(builders.desired(REF, wanted, "s3cret", 3, 3, creds))
    assert "Secret/wallet-ca" not in objs and "Secret/wallet-tls" not in objs and "ConfigMap/wallet-ca" not in objs
    cert = objs["Certificate/wallet"]["spec"]
    assert cert["secretName"] == "wallet-tls" and cert["issuerRef"] == {
        "name": "corp-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert (
        "*.wallet-peers.prod.svc" in cert["dnsNames"] and cert["duration"] == "2160h" and cert["renewBefore"] == "168h"
    )


def test_config_hash_tracks_what_needs_a_restart() -> None:
    base = builders.config_hash(spec())
    assert builders.config_hash(spec(image="walletcluster/node:v2")) != base
    assert builders.config_hash(spec(raft={"heartbeatMs": 50, "electionTimeoutMs": 1000})) != base
    assert builders.config_hash(spec(replicas=5)) == base, "scaling never restarts running pods"


ADDR = {i: builders.raft_address(REF, i) for i in range(8)}


def pod(i: int, ready: bool = True, current: bool = True) -> PodView:
    return PodView(i, f"wallet-{i}", True, ready, current, ADDR[i], f"10.0.0.{i}")


def raft(members: int, leader: int = 0) -> RaftView:
    return RaftView(f"wallet-{leader}", 1, 10, 10, tuple(ADDR[i] for i in range(members)))


def test_plan_scales_up_one_member_at_a_time() -> None:
    seen = Observed(True, 4, 3, (pod(0), pod(1), pod(2), pod(3, ready=False)), raft(3))
    plan = decide(spec(replicas=5), seen, ADDR)
    assert (plan.pods, plan.members_arg, plan.phase) == (4, 3, "Scaling")
    assert plan.action is not None and (plan.action.kind, plan.action.target) == ("add_member", ADDR[3])


def test_plan_scales_down_after_moving_leadership_off_the_victim() -> None:
    pods = tuple(pod(i) for i in range(5))
    moving = decide(spec(replicas=3), Observed(True, 5, 5, pods, raft(5, leader=4)), ADDR)
    assert moving.action is not None and moving.action.kind == "transfer_leadership"
    removing = decide(spec(replicas=3), Observed(True, 5, 5, pods, raft(5, leader=1)), ADDR)
    assert removing.action is not None and (removing.action.kind, removing.action.target) == ("remove_member", ADDR[4])


def test_plan_rolls_followers_first_then_the_leader_and_waits_for_health() -> None:
    stale = (pod(0, current=False), pod(1, current=False), pod(2))
    first = decide(spec(), Observed(True, 3, 3, stale, raft(3, leader=0)), ADDR)
    assert first.action is not None and (first.action.kind, first.action.target) == ("delete_pod", "wallet-1")
    only_leader = (pod(0, current=False), pod(1), pod(2))
    last = decide(spec(), Observed(True, 3, 3, only_leader, raft(3, leader=0)), ADDR)
    assert last.action is not None and last.action.kind == "transfer_leadership"
    unhealthy = (pod(0, current=False), pod(1, ready=False), pod(2))
    assert decide(spec(), Observed(True, 3, 3, unhealthy, raft(3)), ADDR).action is None


def test_plan_reports_quorum_loss() -> None:
    plan = decide(spec(), Observed(True, 3, 3, (pod(0, ready=False), pod(1, ready=False)), None), ADDR)
    assert plan.phase == "QuorumLost" and plan.conditions["QuorumLost"].ok and plan.action is None


def test_conditions_say_what_is_wrong_in_words() -> None:
    lost = decide(spec(), Observed(True, 3, 3, (pod(0, ready=False), pod(1, ready=False)), None), ADDR).conditions
    assert lost["QuorumLost"] == Condition(
        True,
        "NoMemberReportsLeader",
        "2 of 3 member pod(s) run but none reports a leader: a majority of the members is down or cannot reach "
        "the others",
    )
    assert lost["Available"].reason == "NoLeader" and not lost["Available"].ok
    assert lost["Ready"] == Condition(
        False, "NoLeader", "0/3 members ready; not ready: wallet-0, wallet-1; 1 pod(s) missing"
    )

    degraded = decide(spec(), Observed(True, 3, 3, (pod(0), pod(1, ready=False), pod(2)), raft(3)), ADDR)
    assert degraded.phase == "Degraded"
    assert degraded.conditions["Ready"] == Condition(False, "MembersNotReady", "2/3 members ready; not ready: wallet-1")
    assert degraded.conditions["Available"] == Condition(
        True, "LeaderElected", "wallet-0 leads term 1; writes are accepted"
    )

    scaling = decide(spec(replicas=5), Observed(True, 4, 3, (pod(0), pod(1), pod(2), pod(3)), raft(3)), ADDR)
    assert scaling.conditions["Progressing"] == Condition(True, "Scaling", "adding member 3 (scaling to 5)")
    assert scaling.conditions["Ready"].reason == "Scaling"

    healthy = decide(spec(), Observed(True, 3, 3, (pod(0), pod(1), pod(2)), raft(3)), ADDR).conditions
    assert {kind: (c.ok, c.reason) for kind, c in healthy.items()} == {
        "Ready": (True, "AllMembersReady"),
        "Available": (True, "LeaderElected"),
        "Progressing": (False, "UpToDate"),
        "QuorumLost": (False, "QuorumHeld"),
    }


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    first = status_conditions({"Ready": Condition(False, "NoLeader", "0/3")}, [], "t1")
    assert first == [
        {"type": "Ready", "status": "False", "reason": "NoLeader", "message": "0/3", "lastTransitionTime": "t1"}
    ]
    same = status_conditions({"Ready": Condition(False, "MembersNotReady", "2/3")}, first, "t2")
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["reason"] == "MembersNotReady"
    flipped = status_conditions({"Ready": Condition(True, "AllMembersReady", "3/3")}, same, "t3")
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_operator_counts_clusters_by_phase_and_forgets_deleted_ones() -> None:
    now = [0.0]
    phases = Phases(forget_after_s=60, clock=lambda: now[0])
    phases.set("a", "w1", "Running")
    phases.set("b", "w1", "Running")
    phases.set("a", "w2", "QuorumLost")

    def counts() -> dict[str, float]:
        return {s.labels["phase"]: s.value for family in phases.collect() for s in family.samples}

    assert counts() == {p: {"Running": 2, "QuorumLost": 1}.get(p, 0) for p in PHASES}
    now[0] = 50.0
    phases.set("a", "w1", "Degraded")
    now[0] = 100.0  # w2 and b/w1 not reconciled for over a minute: deleted
    assert counts() == {p: 1 if p == "Degraded" else 0 for p in PHASES}


def handshake(host: str, directory: str) -> None:
    """A real TLS handshake with the operator's server certificate over a socket pair, the client
    trusting the published CA bundle and checking `host` (OpenSSL's name matching, wildcards too)."""
    creds, _ = credentials.settle(REF, spec(), None, None, None, datetime.datetime.now(datetime.UTC))
    assert creds.server is not None and creds.ca_bundle is not None
    cert, key = os.path.join(directory, "c"), os.path.join(directory, "k")
    with open(cert, "wb") as c, open(key, "wb") as k:
        c.write(creds.server.cert)
        k.write(creds.server.key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    ours, theirs = socket.socketpair()

    def serve() -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            server.wrap_socket(theirs, server_side=True).close()

    threading.Thread(target=serve, daemon=True).start()
    with ssl.create_default_context(cadata=creds.ca_bundle.decode()).wrap_socket(ours, server_hostname=host):
        pass


@pytest.mark.parametrize(
    "host",
    [
        "wallet.prod.svc",
        "wallet",
        "wallet-0.wallet-peers",  # the README's in-cluster URLs
        "wallet-6.wallet-peers.prod",
        "wallet-3.wallet-peers.prod.svc",
        "wallet-4.wallet-peers.prod.svc.cluster.local",
        "localhost",
    ],
)
def test_the_server_certificate_verifies_for_every_name_a_client_uses(host: str, tmp_path: Path) -> None:
    handshake(host, str(tmp_path))


def test_a_name_the_certificate_does_not_carry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake("evil.example", str(tmp_path))
