"""Backups to a real S3-compatible store (SeaweedFS, tests/s3.py) and restores into new ledgers.

A source cluster archives while a writer keeps transferring; base backups are taken under that
load; then the source is killed and its data directories deleted (as with a deleted namespace),
and new clusters are restored with walletctl at the latest entry, at an entry number and at a
time: every transfer acknowledged before the target is there exactly once, none after it, money
is conserved, and the audit hash is the source's at that entry.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from nacl.signing import SigningKey

from tests.integration.conftest import MINTER, funded, wait_for
from tests.s3 import S3Server
from tests.walletctl import walletctl
from tests.writer import Writer
from walletnode.client import Rejected, WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster

pytestmark = pytest.mark.slow
ALICE, BOB = SigningKey(bytes([21]) * 32), SigningKey(bytes([22]) * 32)
FUNDS = 1_000_000


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(str(tmp_path_factory.mktemp("s3")))
    server.start()
    yield server
    server.stop()


def backup_args(s3: S3Server, prefix: str) -> tuple[str, ...]:
    return ("--backup-endpoint", s3.endpoint, "--backup-bucket", s3.bucket, "--backup-prefix", prefix)


def archived_cluster(base_dir: str, s3: S3Server, prefix: str) -> LocalCluster:
    cluster = LocalCluster(
        base_dir,
        [public_hex(MINTER)],
        3,
        extra_args=(*backup_args(s3, prefix), "--archive-every-s", "0.3"),
        env=s3.env(),
    )
    cluster.start_all()
    cluster.wait_ready(timeout=60)
    return cluster


def settled_status(cluster: LocalCluster, node: int) -> dict[str, Any]:
    """The node's status once its store holds everything it applied: what it publishes stays put
    for longer than the publish period (replicator.PUBLISH_EVERY_S) once writes stop."""

    def steady() -> dict[str, Any] | None:
        before = cluster.status(node)
        time.sleep(0.4)
        after = cluster.status(node)
        return after if before and after and before["audit_index"] == after["audit_index"] else None

    return wait_for(steady, 30, "the status to settle")


def wait_archived(cluster: LocalCluster, leader: int) -> dict[str, Any]:
    """Once writes stopped: the leader's settled status, after its archive holds everything."""
    settled = settled_status(cluster, leader)

    def archived() -> bool:
        status = cluster.status(leader)
        return status is not None and status["archive"]["archived_seq"] == settled["audit_index"]

    wait_for(archived, 30, "the archive to hold every entry")
    return settled


def archive_error(cluster: LocalCluster) -> dict[str, Any] | None:
    status = cluster.status(0)
    return status if status and status["archive"]["error"] else None


def walletctl_restore(
    s3: S3Server, prefix: str, cluster: LocalCluster, i: int, cluster_id: str, target: str = "latest", *more: str
) -> subprocess.CompletedProcess[str]:
    """`walletctl restore` of member i of `cluster` (not started) from the archive at `prefix`."""
    return walletctl(
        {**os.environ, **s3.env()},
        "-o",
        "json",
        "restore",
        *backup_args(s3, prefix),
        "--data-dir",
        cluster.data_dir(i),
        "--cluster-id",
        cluster_id,
        "--peers",
        ",".join(cluster.raft_addresses),
        "--target",
        target,
        *more,
    )


def restore_cluster(
    base_dir: str, s3: S3Server, prefix: str, target: str, cluster_id: str
) -> tuple[LocalCluster, list[dict[str, Any]]]:
    cluster = LocalCluster(base_dir, [public_hex(MINTER)], 3, cluster_id=cluster_id)
    reports = []
    for i in range(3):
        done = walletctl_restore(s3, prefix, cluster, i, cluster_id, target)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    cluster.start_all()
    cluster.wait_ready(timeout=60)
    return cluster, reports


def test_restores_at_latest_at_an_entry_and_at_a_time_hold_exactly_what_was_acknowledged_before(
    s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    source = archived_cluster(str(tmp_path_factory.mktemp("source")), s3, "src")
    client = WalletClient(source.urls, **source.trust)
    funded(client, [ALICE], FUNDS)
    writer = Writer(client, ALICE, BOB)
    try:
        writer.resume()
        wait_for(lambda: len(writer.acked) >= 20, 60, "transfers")
        # A base backup while the writer goes on.
        answer = source.admin_request(1, "POST", "/v1/backups", timeout=120)
        assert answer.status_code == 200, answer.text
        base, at_base = answer.json()["backup"], len(writer.acked)
        wait_for(lambda: len(writer.acked) >= at_base + 40, 60, "transfers after the base backup")
        writer.pause()
        # The cut: everything acknowledged so far is at or before entry `cut_seq` and time `cut_time`.
        leader = source.leader()
        assert leader is not None
        cut = writer.cut(functools.partial(settled_status, source, leader))
        cut_seq, cut_hash, cut_acked, cut_time = cut.seq, cut.audit_hash, cut.acked, cut.time
        last = wait_archived(source, leader)
        assert base["seq"] < cut_seq
    finally:
        writer.close()
    acked = [(command_id, command) for command_id, _, command in writer.acked]
    source.stop_all()
    # The source's volumes are gone, as with a deleted namespace.
    shutil.rmtree(source.base_dir)

    listed = walletctl({**os.environ, **s3.env()}, "-o", "json", "backup", "list", *backup_args(s3, "src"))
    assert listed.returncode == 0, listed.stderr
    assert [b["name"] for b in json.loads(listed.stdout)["bases"]] == [base["name"]]
    verified = walletctl({**os.environ, **s3.env()}, "-o", "json", "backup", "verify", *backup_args(s3, "src"))
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["last_seq"] == last["audit_index"]

    targets = {
        "latest": (last["audit_index"], last["audit_hash"], len(acked)),
        str(cut_seq): (cut_seq, cut_hash, cut_acked),
        cut_time.isoformat(): (cut_seq, cut_hash, cut_acked),
    }
    for n, (target, (seq, audit_hash, present)) in enumerate(targets.items()):
        restored, reports = restore_cluster(
            str(tmp_path_factory.mktemp(f"restored{n}")), s3, "src", target, f"wallet-restored-{n}"
        )
        try:
            assert {(r["seq"], r["audit_hash"], r["base"]) for r in reports} == {(seq, audit_hash, base["name"])}
            check = WalletClient(restored.urls, **restored.trust)
            for i in range(3):
                status = check.status_of(restored.urls[i])
                assert (status["audit_index"], status["audit_hash"]) == (seq, audit_hash), (target, i)
            assert check.balances(public_hex(BOB)) == {"USD": present}, target
            assert check.balances(public_hex(ALICE)) == {"USD": FUNDS - present}, target
            for command_id, _ in acked[:present]:
                assert check.command(command_id)["result"] == "ok", (target, command_id)
            for command_id, _ in acked[present:]:
                with pytest.raises(Rejected):
                    check.command(command_id)
            if present < len(acked):
                # Acknowledged by the source after the target, signed for the source: void here.
                assert check.submit([acked[present][1]]) == ["invalid_signature"]
                assert check.balances(public_hex(BOB)) == {"USD": present}
            # The restored ledger takes new transfers, signed for it.
            assert check.transfer(ALICE, public_hex(BOB), "USD", 5) == "ok"
            if target == "latest":
                # A member wiped after the restore cannot replay the new group's log onto an empty
                # store (it begins after the restored state): the leader sends it the store.
                wiped = 2 if restored.leader() != 2 else 1
                restored.kill(wiped)
                shutil.rmtree(restored.data_dir(wiped))
                restored.start(wiped)
                leader = restored.leader()
                assert leader is not None
                wanted = settled_status(restored, leader)["audit_hash"]
                wait_for(
                    lambda: (s := restored.status(wiped)) is not None and s["audit_hash"] == wanted,  # noqa: B023
                    60,
                    "the wiped member to catch up",
                )
                assert WalletClient([restored.urls[wiped]], **restored.trust).balances(
                    public_hex(BOB), consistency="stale"
                ) == {"USD": present + 5}
        finally:
            restored.stop_all()


def test_a_restored_member_refuses_to_serve_under_another_cluster_id(
    s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    source = archived_cluster(str(tmp_path_factory.mktemp("source")), s3, "src2")
    try:
        client = WalletClient(source.urls, **source.trust)
        funded(client, [ALICE], 100)
        leader = source.leader()
        assert leader is not None
        wait_archived(source, leader)
    finally:
        source.stop_all()
    same = LocalCluster(str(tmp_path_factory.mktemp("same")), [public_hex(MINTER)], 3)
    refused = walletctl_restore(s3, "src2", same, 0, "wallet")
    assert refused.returncode == 1
    assert "cluster id (signing domain) of its own" in refused.stderr
    assert not os.path.exists(os.path.join(same.data_dir(0), "ledger.lmdb"))
    restored = walletctl_restore(s3, "src2", same, 0, "wallet-copy")
    assert restored.returncode == 0, restored.stderr
    again = walletctl_restore(s3, "src2", same, 0, "wallet-copy")
    assert again.returncode == 1 and "restore only into a new one" in again.stderr
    # As the operator's init container runs it: a restart finds the ledger and leaves it; a member
    # that is not among --peers (it joins later) restores nothing.
    before = os.stat(os.path.join(same.data_dir(0), "ledger.lmdb")).st_mtime_ns
    kept = walletctl_restore(s3, "src2", same, 0, "wallet-copy", "latest", "--if-empty")
    assert kept.returncode == 0 and "holds a ledger already" in kept.stderr, kept.stderr
    assert os.stat(os.path.join(same.data_dir(0), "ledger.lmdb")).st_mtime_ns == before
    joiner = walletctl_restore(s3, "src2", same, 1, "wallet-copy", "latest", "--for-member", "wallet-1")
    assert joiner.returncode == 0 and "not a founding member" in joiner.stderr, joiner.stderr
    assert not os.path.exists(os.path.join(same.data_dir(1), "ledger.lmdb"))
    same.start(0)  # with the default cluster id "wallet": refused, with what to do
    wait_for(lambda: same.processes[0].poll() is not None, 30, "the node to exit")
    assert "serve it with --cluster-id 'wallet-copy'" in same.tail(0)


def test_wrong_credentials_an_unreachable_store_and_a_corrupt_object_are_reported_not_fatal(
    s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wrong = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    closed = LocalCluster(str(tmp_path_factory.mktemp("x")), [], 1).http_ports[0]  # a port nobody listens on
    # The location by environment variables here (as the operator passes it), by flags below.
    by_env = {"WALLET_BACKUP_ENDPOINT": s3.endpoint, "WALLET_BACKUP_BUCKET": s3.bucket, "WALLET_BACKUP_PREFIX": "bad"}
    cases = {
        "wrong credentials": ((), {**wrong, **by_env}, "SignatureDoesNotMatch"),
        "unreachable": (
            ("--backup-endpoint", f"http://127.0.0.1:{closed}", "--backup-bucket", "backups"),
            s3.env(),
            "cannot reach the object store",
        ),
    }
    for what, (args, env, said) in cases.items():
        cluster = LocalCluster(
            str(tmp_path_factory.mktemp("errors")),
            [public_hex(MINTER)],
            1,
            extra_args=(*args, "--archive-every-s", "0.2"),
            env=env,
        )
        cluster.start_all()
        try:
            cluster.wait_ready(timeout=60)
            client = WalletClient(cluster.urls, **cluster.trust)
            funded(client, [ALICE], 100)  # writes go on
            status = wait_for(functools.partial(archive_error, cluster), 30, what)
            assert said in status["archive"]["error"], (what, status["archive"])
            answer = cluster.admin_request(0, "POST", "/v1/backups", timeout=60)
            assert answer.status_code == 502 and said in answer.json()["message"], (what, answer.text)
            assert client.transfer(ALICE, public_hex(BOB), "USD", 1) == "ok"
            assert cluster.processes[0].poll() is None, f"{what}: the node exited"
        finally:
            cluster.stop_all()

    # A corrupt segment: restore and verify name it and stop; nothing is left half-restored.
    source = archived_cluster(str(tmp_path_factory.mktemp("source")), s3, "corrupt")
    try:
        client = WalletClient(source.urls, **source.trust)
        funded(client, [ALICE], 100)
        assert source.admin_request(0, "POST", "/v1/backups", timeout=60).status_code == 200
        for _ in range(5):
            assert client.transfer(ALICE, public_hex(BOB), "USD", 1) == "ok"
        leader = source.leader()
        assert leader is not None
        wait_archived(source, leader)
    finally:
        source.stop_all()
    objects = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="corrupt/wal/")["Contents"]
    key = objects[-1]["Key"]
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"\x28\xb5\x2f\xfd garbage")
    target = LocalCluster(str(tmp_path_factory.mktemp("target")), [public_hex(MINTER)], 1)
    env = {**os.environ, **s3.env()}
    done = walletctl_restore(s3, "corrupt", target, 0, "wallet-2")
    assert done.returncode == 1 and f"{key.removeprefix('corrupt/')} is corrupt" in done.stderr, done.stderr
    assert not [n for n in os.listdir(target.data_dir(0)) if n.startswith("ledger.lmdb")]
    checked = walletctl(env, "backup", "verify", *backup_args(s3, "corrupt"))
    assert checked.returncode == 1 and "is corrupt" in checked.stderr, checked.stderr


def test_prune_deletes_what_retention_lets_go_and_what_it_keeps_still_restores(
    s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    source = archived_cluster(str(tmp_path_factory.mktemp("source")), s3, "pruned")
    names = []
    try:
        client = WalletClient(source.urls, **source.trust)
        funded(client, [ALICE], 1000)
        env = {**os.environ, **source.client_env()}
        for round_ in range(3):
            for _ in range(10):
                assert client.transfer(ALICE, public_hex(BOB), "USD", 1) == "ok"
            if round_ == 1:  # as a user would: walletctl, with the admin key
                admin = ("--admin-url", source.admin_urls[1], "--admin-key-file", source.admin_key_file)
                created = walletctl(env, "-o", "json", "backup", "create", *admin)
                assert created.returncode == 0, created.stderr
                names.append(json.loads(created.stdout)["backup"]["name"])
            else:  # with retention (as the operator asks): no base is a day old (only segments before them go)
                answer = source.admin_request(round_, "POST", "/v1/backups", {"keep_days": 1}, timeout=60)
                assert answer.status_code == 200, answer.text
                assert answer.json()["pruned"]["bases"] == []
                names.append(answer.json()["backup"]["name"])
            time.sleep(1.5 if round_ < 2 else 0)
        for _ in range(10):
            assert client.transfer(ALICE, public_hex(BOB), "USD", 1) == "ok"
        leader = source.leader()
        assert leader is not None
        last = wait_archived(source, leader)
    finally:
        source.stop_all()
    env = {**os.environ, **s3.env()}
    window = str(1.2 / 86_400)  # 1.2 s: the first two bases are older, the third is not
    prune = ("-o", "json", "backup", "prune", "--keep-days", window, *backup_args(s3, "pruned"))
    dry = walletctl(env, *prune, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["bases"] == names[:2]
    listed = walletctl(env, "-o", "json", "backup", "list", *backup_args(s3, "pruned"))
    assert [b["name"] for b in json.loads(listed.stdout)["bases"]] == names  # a dry run deletes nothing
    pruned = walletctl(env, *prune)
    assert pruned.returncode == 0, pruned.stderr
    listing = json.loads(walletctl(env, "-o", "json", "backup", "list", *backup_args(s3, "pruned")).stdout)
    kept = listing["bases"][0]
    assert [b["name"] for b in listing["bases"]] == [names[2]]
    assert listing["archived_entries"][0] <= kept["seq"] + 1 and listing["archived_entries"][1] == last["audit_index"]
    target = LocalCluster(str(tmp_path_factory.mktemp("target")), [public_hex(MINTER)], 1)
    early = walletctl_restore(s3, "pruned", target, 0, "wallet-early", target=str(kept["seq"] - 1))
    assert early.returncode == 1, "a point before the oldest kept base is gone"
    done = walletctl_restore(s3, "pruned", target, 0, "wallet-late")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["audit_hash"] == last["audit_hash"]
