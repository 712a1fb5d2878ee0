"""The operator's backup side, pure parts: spec.backup's schedule and retention, a cluster made by
spec.bootstrap.recovery (one restored founding member, a signing domain of its own), the
BackupFailing condition and the restore's failure in words."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from walletoperator import builders
from walletoperator.backups import next_run
from walletoperator.diagnosis import pod_problem, restore_problem, restore_running
from walletoperator.handlers import backup_condition
from walletoperator.plan import Observed, decide
from walletoperator.spec import ClusterRef

from .test_operator_builders import ADDR, pod, raft, spec

SOURCE = {"endpoint": "http://s3.example:8333", "bucket": "ledgers", "credentialsSecret": {"name": "s3-keys"}}
BACKUP = {**SOURCE, "schedule": "*/5 * * * *", "retention": {"days": 7, "bases": 2}}
RESTORED = ClusterRef("wallet", "prod", "0123456789abcdef", restored=True)


def recovering(**target: Any) -> dict[str, Any]:
    return {"recovery": {"source": SOURCE, "target": target}}


def test_schedule_and_retention_are_the_operators_and_restart_no_pod() -> None:
    wanted = spec(backup=BACKUP)
    assert wanted.backup is not None
    assert (wanted.backup.schedule, wanted.backup.keep_days, wanted.backup.keep_bases) == ("*/5 * * * *", 7, 2)
    assert builders.config_hash(wanted) == builders.config_hash(spec(backup=SOURCE))
    env = {
        e["name"]
        for e in builders.stateful_set(ClusterRef("w", "p", "u"), wanted, 3, 3)["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert "WALLET_BACKUP_ENDPOINT" in env and not any("SCHEDULE" in n or "KEEP" in n for n in env)


def test_the_schedule_is_cron_in_utc() -> None:
    at = datetime.datetime(2026, 6, 1, 10, 3, 20, tzinfo=datetime.UTC)
    assert next_run("*/5 * * * *", at) == datetime.datetime(2026, 6, 1, 10, 5, tzinfo=datetime.UTC)
    assert next_run("@daily", at) == datetime.datetime(2026, 6, 2, tzinfo=datetime.UTC)
    with pytest.raises(ValueError, match="is not a cron expression"):
        next_run("99 * * * *", at)


@pytest.mark.parametrize(
    ("target", "text"),
    [
        ({}, "latest"),
        ({"latest": True}, "latest"),
        ({"index": 1234}, "1234"),
        ({"time": "2026-06-01T10:00:00Z"}, "2026-06-01T10:00:00Z"),
    ],
)
def test_the_recovery_target_is_what_walletctl_restore_takes(target: dict[str, Any], text: str) -> None:
    wanted = spec(bootstrap=recovering(**target))
    assert wanted.recovery is not None and wanted.recovery.target == text


def test_a_restored_cluster_is_a_new_ledger_with_an_id_and_archive_of_its_own() -> None:
    assert builders.cluster_id(RESTORED) == "prod/wallet@01234567"
    assert builders.cluster_id(ClusterRef("wallet", "prod", "0123456789abcdef")) == "prod/wallet"
    wanted = spec(bootstrap=recovering(index=42), backup=SOURCE)
    sts = builders.stateful_set(RESTORED, wanted, 1, 1, restoring=True)
    pod_spec = sts["spec"]["template"]["spec"]
    node = pod_spec["containers"][0]
    args = node["args"]
    assert args[args.index("--cluster-id") + 1] == "prod/wallet@01234567"
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["WALLET_BACKUP_PREFIX"] == "prod/wallet@01234567", "never the source's own prefix"
    (init,) = pod_spec["initContainers"]
    assert init["command"] == ["walletctl", "restore"]
    a = init["args"]
    assert a[a.index("--peers") + 1] == builders.raft_address(RESTORED, 0), "member 0 alone founds the ledger"
    assert a[a.index("--target") + 1] == "42" and a[a.index("--cluster-id") + 1] == "prod/wallet@01234567"
    assert "--if-empty" in a and a[a.index("--for-member") + 1] == "$(POD_NAME)"
    assert "--retry" in a, "failures are retried in place, not by the kubelet in a crash loop"
    init_env = {e["name"]: e.get("value", e.get("valueFrom")) for e in init["env"]}
    assert init_env["WALLET_BACKUP_PREFIX"] == "prod/wallet", "the source: where a cluster of this name archived"
    assert init_env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-keys", "key": "AWS_ACCESS_KEY_ID"}}
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {m["mountPath"] for m in init["volumeMounts"]} == {"/data", "/tmp"}
    # Once recovered, no pod restores again (a member that loses its volume is sent the store).
    done = builders.stateful_set(RESTORED, wanted, 3, 3)["spec"]["template"]["spec"]
    assert "initContainers" not in done
    assert builders.config_hash(wanted) == builders.config_hash(spec(bootstrap=recovering(index=7), backup=SOURCE))


def test_a_recovery_starts_with_one_restored_member_and_then_scales_up() -> None:
    wanted = spec(bootstrap=recovering())
    first = decide(wanted, Observed(False, 0, 0, (), None), ADDR)
    assert (first.pods, first.members_arg, first.phase) == (1, 1, "Restoring")
    waiting = decide(wanted, Observed(True, 1, 1, (pod(0, ready=False),), None, restoring=True), ADDR)
    assert waiting.phase == "Restoring" and waiting.action is None
    led = decide(wanted, Observed(True, 1, 1, (pod(0),), raft(1)), ADDR)
    assert led.phase == "Scaling" and led.pods == 2
    joined = decide(wanted, Observed(True, 2, 1, (pod(0), pod(1)), raft(1)), ADDR)
    assert joined.action is not None and joined.action.kind == "add_member" and joined.action.member == 1


def failed_restore(message: str | None, state: dict[str, Any] | None = None) -> dict[str, Any]:
    ended = {"terminated": {"exitCode": 1, "reason": "Error", **({"message": message} if message else {})}}
    init = {
        "name": "restore",
        "state": state or {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting"}},
        "lastState": ended,
    }
    return {"metadata": {"name": "wallet-0"}, "status": {"phase": "Pending", "initContainerStatuses": [init]}}


def test_a_failed_restore_is_named_with_walletctls_last_words() -> None:
    words = "error: base/00000000000000000120-20260601T100000Z/store.zst: sha256 mismatch (the object is corrupt)"
    problem = pod_problem(failed_restore(f"restoring...\n{words}\n"))
    assert problem is not None and problem.reason == "RecoveryFailed"
    assert problem.message == f"wallet-0: the restore from the backup failed: {words}"
    assert "exit code 1" in str(pod_problem(failed_restore(None)))
    succeeded = failed_restore("error: earlier", state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    assert pod_problem(succeeded) is None, "a restore that succeeded after a retry is not a problem"


def test_a_restore_that_tries_again_is_named_from_its_log() -> None:
    running = failed_restore(None, state={"running": {"startedAt": "2026-06-01T10:00:00Z"}})
    assert restore_running(running) and not restore_running(failed_restore(None))
    line = "error: the archive has no entry 1201 (trying again in 40s)"
    problem = restore_problem("wallet-0", line)
    assert problem is not None and problem.reason == "RecoveryFailed"
    assert (
        problem.message
        == "wallet-0: the restore from the backup failed: the archive has no entry 1201 (trying again in 40s)"
    )
    assert restore_problem("wallet-0", "") is None, "restoring, nothing wrong (yet)"


def test_backup_failing_names_the_object_stores_error() -> None:
    denied = {
        "archived_seq": None,
        "error": "SignatureDoesNotMatch: The request signature we calculated does not match",
    }
    condition, problems = backup_condition(denied, {})
    assert condition.ok and condition.reason == "ArchiveFailing" and "SignatureDoesNotMatch" in condition.message
    assert [p.reason for p in problems] == ["ArchiveFailing"]
    condition, problems = backup_condition(
        {"archived_seq": 9, "error": None}, {"lastError": "wallet-1 answered 502: x"}
    )
    assert condition.ok and condition.reason == "BaseBackupFailed" and not problems
    fine = {"archived_seq": 9, "error": None}
    condition, _ = backup_condition(fine, {"lastBackup": {"name": "00000000000000000009-20260601T100000Z"}})
    assert (
        not condition.ok
        and condition.message == "archived to entry 9; last base backup 00000000000000000009-20260601T100000Z"
    )
