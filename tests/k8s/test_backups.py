"""Backups of a WalletCluster and restores into new WalletClusters, on the local Kubernetes, with
a real S3-compatible store (SeaweedFS, tests/s3.py) listening on the pods' bridge: outside the
cluster, as object storage is.

A source cluster archives continuously while a writer transfers; the operator takes scheduled
base backups (and prunes by the retention policy) and one for a WalletBackup; then the source's
namespace is deleted with its volumes, and new WalletClusters are made from the archive at the
latest entry, at an entry and at a time. Each holds exactly what was acknowledged before its
target, the source's audit hash at it, and money is conserved. Wrong credentials, an unreachable
store and a corrupt object each show as a condition with the store's words.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from tests.s3 import S3Server
from tests.writer import Writer
from walletnode.backup.archive import Archive
from walletnode.backup.objectstore import S3Store
from walletnode.client import Rejected, WalletClient
from walletnode.ledger.commands import Transfer, decode_entry
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import free_ports

from .kube import Kubectl, fresh_namespace, wait_until
from .walletclusters import MINTER, Operator, cluster, delete_cluster, pod_urls, running_with, status, trust

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1800, func_only=True)]

ALICE, BOB = SigningKey(bytes([31]) * 32), SigningKey(bytes([32]) * 32)
FUNDS = 10_000_000
#: Base backups older than this are pruned after each one the operator takes (the newest is kept).
KEEP_DAYS = 40 / 86_400


def bridge_address() -> str:
    """The host's address on the pods' bridge of hack/k8s/node (their default gateway)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "wcbr0"], capture_output=True, text=True, check=True)
    return out.stdout.split()[3].split("/")[0]


@pytest.fixture(scope="module")
def s3(k8s_node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(str(tmp_path_factory.mktemp("s3")), host=bridge_address())
    server.start()
    yield server
    server.stop()


def keys_secret(kubectl: Kubectl, namespace: str, s3: S3Server, name: str, secret_key: str | None = None) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": secret_key or s3.secret_key},
        },
        namespace,
    )


def location(s3: S3Server, secret: str = "s3-keys", **more: Any) -> dict[str, Any]:
    return {"endpoint": s3.endpoint, "bucket": s3.bucket, "credentialsSecret": {"name": secret}, **more}


def restored_from(source: str, s3: S3Server, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    recovery = {"source": location(s3, prefix=f"{source}/wallet"), "target": target}
    return cluster(imagePullPolicy="Never", bootstrap={"recovery": recovery}, **spec)


def condition(kubectl: Kubectl, namespace: str, kind: str) -> dict[str, Any] | None:
    return next((c for c in status(kubectl, namespace).get("conditions") or [] if c["type"] == kind), None)


def settled(client: WalletClient, urls: list[str]) -> dict[str, Any]:
    """The leader's status once its audit index stays put (writes stopped, all published)."""

    def steady() -> dict[str, Any] | None:
        before = [client.status_of(u) for u in urls]
        time.sleep(0.6)
        after = [client.status_of(u) for u in urls]
        leaders = [a for a in after if a["role"] == "leader"]
        same = [b["audit_index"] for b in before] == [a["audit_index"] for a in after]
        return leaders[0] if leaders and same else None

    return wait_until("the ledger to settle", steady, timeout=60)


def wbk(kubectl: Kubectl, namespace: str, name: str, cluster_name: str = "wallet") -> dict[str, Any]:
    """A WalletBackup, applied; its status once the operator is done with it."""
    kubectl.apply(
        {
            "apiVersion": "ledger.walletcluster.io/v1alpha1",
            "kind": "WalletBackup",
            "metadata": {"name": name},
            "spec": {"cluster": cluster_name},
        },
        namespace,
    )

    def done() -> dict[str, Any] | None:
        got = (kubectl.get("walletbackup", name, namespace) or {}).get("status") or {}
        return got if got.get("phase") in ("Completed", "Failed") else None

    return wait_until(f"WalletBackup {name} to finish", done, timeout=180)


def transfers_applied(client: WalletClient, last: int) -> list[str]:
    """The ids of the transfers a ledger applied ("ok") in entries 1..last, from its event stream."""
    ids = []
    for event in client.events(0, stop_at=last):
        commands = decode_entry(base64.b64decode(event["entry"])).commands
        ids += [c.id for c, r in zip(commands, event["results"], strict=True) if isinstance(c, Transfer) and r == "ok"]
    return ids


def new_backup(kubectl: Kubectl, namespace: str, seen: list[str]) -> str | None:
    """The last base backup in the cluster's status, if it is not one of `seen`."""
    name = ((status(kubectl, namespace).get("backup") or {}).get("lastBackup") or {}).get("name")
    return name if name not in seen else None


def reasons_in(kubectl: Kubectl, namespace: str) -> list[str]:
    return [f"{e['reason']}: {e['message']}" for e in kubectl.json("get", "events", "-n", namespace)["items"]]


@contextlib.contextmanager
def operated(kubectl: Kubectl, kubeconfig: str, log: Path, count: int) -> Iterator[list[str]]:
    """`count` fresh namespaces and the operator; at the end the clusters are deleted while it
    still runs (it releases their finalizers), then it stops."""
    with contextlib.ExitStack() as stack:
        names = [stack.enter_context(fresh_namespace(kubectl, f"backups-{i}")) for i in range(count)]
        # Watching every namespace, as the operator chart does by default. Watching a list of them,
        # kopf stops watching one as soon as it is marked for deletion, so a WalletCluster in it
        # would keep its finalizer and the namespace would never go (docs/operations.md).
        running = Operator(kubeconfig, None, log)
        running.start()
        try:
            yield names
        finally:
            for name in names:
                delete_cluster(kubectl, name, "--all", check=False)
            running.stop()
            print(log.read_text()[-6000:])


def test_backups_under_load_and_restores_into_new_clusters_at_latest_an_index_and_a_time(
    crd: None, node_image: str, k8s_cluster: str, kubectl: Kubectl, s3: S3Server, tmp_path: Path
) -> None:
    with operated(kubectl, k8s_cluster, tmp_path / "operator.log", 5) as (source, latest, at_index, at_time, broken):
        # --- the source: archives every second, a base backup every minute, keeps 40 s of them ---
        keys_secret(kubectl, source, s3, "s3-keys")
        backup = location(s3, archiveEverySeconds=1, schedule="* * * * *", retention={"days": KEEP_DAYS})
        kubectl.apply(cluster(imagePullPolicy="Never", backup=backup), source)
        wait_until("the source cluster", lambda: running_with(kubectl, source, 3), timeout=240)
        urls = pod_urls(kubectl, source)
        client = WalletClient(urls, **trust(kubectl, source, tmp_path))
        assert client.create_currency(MINTER, "USD", 2) == "ok"
        assert client.mint(MINTER, public_hex(ALICE), "USD", FUNDS) == "ok"
        writer = Writer(client, ALICE, BOB)
        try:
            writer.resume()
            # On demand, under load: taken by a follower, its place in the ledger in its status.
            first = wbk(kubectl, source, "first")
            assert first["phase"] == "Completed", first
            assert first["member"] != status(kubectl, source)["leader"], "a follower takes it"
            assert first["index"] > 0 and len(first["auditHash"]) == 64 and first["size"] > 0, first
            assert first["startedAt"] <= first["completedAt"]
            # Two scheduled ones: after the second, retention has deleted every base but the newest.
            names = [first["backupName"]]
            for _ in range(2):
                names.append(wait_until("a scheduled base backup", lambda: new_backup(kubectl, source, names), 150, 2))
            assert any(r.startswith("BackupTaken: base backup") for r in reasons_in(kubectl, source))
            # The cut: everything acknowledged so far is at or before entry cut_seq and time cut_time.
            cut = writer.cut(functools.partial(settled, client, urls))
            cut_seq, cut_hash, cut_acked, cut_time = cut.seq, cut.audit_hash, cut.acked, cut.time
            last = settled(client, urls)
            wait_until(
                "the archive to hold every entry",
                lambda: (status(kubectl, source).get("backup") or {}).get("archivedIndex") == last["audit_index"],
                timeout=60,
            )
        finally:
            writer.close()
        acked = [(command_id, command) for command_id, _, command in writer.acked]
        print(f"{len(acked)} transfers acknowledged; cut at entry {cut_seq}, last {last['audit_index']}; bases {names}")
        archive = Archive(S3Store(s3.location(f"{source}/wallet")), "")
        assert [b.name for b in archive.bases()] == [names[-1]], "retention kept only the newest base backup"
        assert archive.segments()[0].first <= archive.bases()[0].seq + 1, "and every entry after it"

        # --- the source is gone, volumes and all ---
        kubectl.run("delete", "namespace", source, "--wait=true", "--timeout=240s", timeout=260)

        # --- new clusters from its archive ---
        for namespace in (latest, at_index, at_time):
            keys_secret(kubectl, namespace, s3, "s3-keys")
        keys_secret(kubectl, latest, s3, "s3-wrong", secret_key="not-the-secret")
        closed = f"http://{s3.host}:{free_ports(1)[0]}"  # nobody listens there
        kubectl.apply(restored_from(source, s3, {}, backup=location(s3, "s3-wrong")), latest)
        kubectl.apply(
            restored_from(source, s3, {"index": cut_seq}, replicas=1, backup={**location(s3), "endpoint": closed}),
            at_index,
        )
        kubectl.apply(
            restored_from(source, s3, {"time": cut_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}, replicas=1), at_time
        )
        expected = {
            latest: (3, last["audit_index"], last["audit_hash"], len(acked)),
            at_index: (1, cut_seq, cut_hash, cut_acked),
            at_time: (1, cut_seq, cut_hash, cut_acked),
        }
        applied = time.monotonic()
        for namespace, (members, seq, audit_hash, present) in expected.items():
            up = functools.partial(running_with, kubectl, namespace, members)
            wait_until(f"the restored cluster in {namespace}", up, timeout=300)
            print(
                f"{namespace}: {members} member(s) at entry {seq} Running {time.monotonic() - applied:.0f}s after apply"
            )
            got = status(kubectl, namespace)
            assert got["recovery"]["phase"] == "Recovered", got["recovery"]
            uid = kubectl.get("wc", "wallet", namespace)["metadata"]["uid"]  # type: ignore[index]
            check = WalletClient(pod_urls(kubectl, namespace), **trust(kubectl, namespace, tmp_path))
            assert check.cluster_id == f"{namespace}/wallet@{uid[:8]}", "a new ledger, a signing domain of its own"
            for url in check.urls:  # every member: the founder, and those it sent its store to
                wait_until(
                    f"{url} at the target",
                    lambda: (m := check.status_of(url))["audit_index"] == seq and m["audit_hash"] == audit_hash,  # noqa: B023
                    timeout=30,
                )
            assert check.balances(public_hex(BOB)) == {"USD": present}, namespace
            assert check.balances(public_hex(ALICE)) == {"USD": FUNDS - present}, namespace
            # Its whole history, read back: each transfer acknowledged before the target exactly once.
            history = transfers_applied(check, seq)
            assert len(history) == len(set(history)) and set(history) == {i for i, _ in acked[:present]}, namespace
            for command_id, _ in acked[present:]:
                with pytest.raises(Rejected):
                    check.command(command_id)
            if present < len(acked):  # acknowledged by the source after the target, signed for it: void here
                assert check.submit([acked[present][1]]) == ["invalid_signature"]
            assert check.transfer(ALICE, public_hex(BOB), "USD", 5) == "ok", "it takes new transfers"
            assert any(r.startswith("Recovered:") for r in reasons_in(kubectl, namespace))

        # --- what goes wrong is said, and nothing crash-loops ---
        for namespace, said in ((latest, "SignatureDoesNotMatch"), (at_index, "cannot reach the object store")):
            failing = wait_until(
                f"BackupFailing in {namespace}",
                lambda: (c := condition(kubectl, namespace, "BackupFailing")) and c["status"] == "True" and c,  # noqa: B023
                timeout=60,
            )
            assert failing["reason"] == "ArchiveFailing" and said in failing["message"], failing
            assert any(r.startswith("ArchiveFailing:") and said in r for r in reasons_in(kubectl, namespace))
        refused = wbk(kubectl, at_index, "doomed")
        assert refused["phase"] == "Failed" and "cannot reach the object store" in refused["message"], refused
        assert wbk(kubectl, at_time, "nowhere")["message"].endswith(
            "has no spec.backup: there is nowhere to back up to"
        )
        restarts = kubectl.json("get", "pods", "-n", latest)["items"]
        assert all(c["restartCount"] == 0 for p in restarts for c in p["status"]["containerStatuses"]), "no restarts"

        # A corrupt object in the archive: the restore stops, names it, and the cluster says so.
        store = s3.client()
        key = store.list_objects_v2(Bucket=s3.bucket, Prefix=f"{source}/wallet/wal/")["Contents"][-1]["Key"]
        store.put_object(Bucket=s3.bucket, Key=key, Body=b"\x28\xb5\x2f\xfd garbage")
        keys_secret(kubectl, broken, s3, "s3-keys")
        kubectl.apply(restored_from(source, s3, {}, replicas=1), broken)
        ready = wait_until(
            "the restore's failure in the conditions",
            lambda: (c := condition(kubectl, broken, "Ready")) and c["reason"] == "RecoveryFailed" and c,
            timeout=180,
        )
        assert f"{key.removeprefix(f'{source}/wallet/')} is corrupt" in ready["message"], ready
        assert status(kubectl, broken)["phase"] == "Restoring"
        (pod,) = kubectl.json("get", "pods", "-n", broken)["items"]
        (init,) = pod["status"]["initContainerStatuses"]
        assert init["restartCount"] == 0 and "running" in init["state"], "it tries again in place: no crash loop"
        assert any(r.startswith("RecoveryFailed:") for r in reasons_in(kubectl, broken))
