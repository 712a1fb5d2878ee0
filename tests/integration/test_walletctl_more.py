"""walletctl beyond the basics: keys, prefixes, history, status, audit, watch, shell, completion, bench."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import threading

from walletnode.client import WalletClient
from walletnode.keystore import Keystore
from walletnode.localcluster import LocalCluster

from ..walletctl import walletctl
from .conftest import MINTER


def setup_env(cluster: LocalCluster, tmp_path: pathlib.Path) -> dict[str, str]:
    home = str(tmp_path / "keys")
    Keystore(home).create("minter", "", seed=bytes(MINTER))
    env = {**os.environ, **cluster.client_env(), "WALLET_HOME": home, "WALLET_PASSWORD": ""}
    for name in ("alice", "albert", "bob"):
        assert walletctl(env, "keys", "new", name).returncode == 0
    assert walletctl(env, "currency", "create", "USD", "--scale", "2").returncode == 0
    assert walletctl(env, "mint", "alice", "100.00", "USD").returncode == 0
    return env


def test_keys_prefixes_history_status_audit(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    env = setup_env(cluster, tmp_path)
    ambiguous = walletctl(env, "send", "al", "1.00", "USD", "--as", "alice")
    assert ambiguous.returncode == 2 and "albert" in ambiguous.stderr and "alice" in ambiguous.stderr
    bob = Keystore(env["WALLET_HOME"]).public("bob")
    assert walletctl(env, "send", bob[:10], "2.50", "USD", "--as", "alic").returncode == 0, "unique prefixes work"

    history = json.loads(walletctl(env, "-o", "json", "history", "bob").stdout)
    assert [(i["command"]["kind"], i["command"]["amount"]) for i in history["items"]] == [("transfer", 250)]

    exported = json.loads(walletctl(env, "keys", "export", "albert").stdout)
    assert walletctl(env, "keys", "delete", "albert", "--yes").returncode == 0
    assert "albert" not in walletctl(env, "keys", "list").stdout
    assert len(exported["seed"]) == 64

    rows = json.loads(walletctl(env, "-o", "json", "status").stdout)
    assert sorted(r["role"] for r in rows) == ["follower", "follower", "leader"]
    assert all("lag" in r for r in rows)

    audit = walletctl(env, "-o", "json", "audit", "verify")
    assert audit.returncode == 0, audit.stderr
    verdict = json.loads(audit.stdout)
    assert verdict["disagree"] == [] and len(verdict["agree"]) == 3

    balance = json.loads(walletctl(env, "-o", "json", "balance", "bob").stdout)
    assert balance[0]["balances"] == {"USD": 250} and len(balance[0]["attested_by"]) >= 2


def test_event_stream_follows_a_dying_node_without_gaps(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    env = setup_env(cluster, tmp_path)
    seen: list[int] = []
    done = threading.Event()

    def follow() -> None:
        with WalletClient(cluster.urls, **cluster.trust) as client:
            for event in client.events(0, stop_at=12):
                seen.append(event["index"])
        done.set()

    reader = threading.Thread(target=follow)
    reader.start()
    for _ in range(3):
        assert walletctl(env, "send", "bob", "0.01", "USD", "--as", "alice").returncode == 0
    cluster.kill(0, signal.SIGKILL)  # the node the reader started on
    env["WALLET_URL"] = ",".join(cluster.urls[1:])
    while not done.is_set():
        assert walletctl(env, "send", "bob", "0.01", "USD", "--as", "alice").returncode == 0
        done.wait(0.2)
    reader.join(timeout=60)
    assert seen == list(range(1, 13))
    # `walletctl status` shows the dead node down, and each survivor with one of its two links up.
    env.update(WALLET_URL=",".join(cluster.urls), COLUMNS="80")
    shown = walletctl(env, "status")
    table = shown.stdout
    assert "down" in table and table.count(" 1/2 ") == 2, table
    assert "…" not in table and max(len(line) for line in table.splitlines()) <= 80, table
    assert cluster.urls[0].removeprefix("https://") in table and "ConnectError" in shown.stderr, shown.stderr


def test_shell_completion_and_bench(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    env = setup_env(cluster, tmp_path)
    session = walletctl(env, "shell", stdin="balance bob --stale\nsend bob 1.00 USD --as alice\nnonsense\nquit\n")
    assert session.returncode == 0
    assert "send 1.00 USD to bob: ok" in session.stdout
    assert "No such command" in session.stdout + session.stderr
    script = walletctl(env, "completion", "bash")
    assert script.returncode == 0 and "_WALLETCTL_COMPLETE" in script.stdout

    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    bench = walletctl(
        env,
        "bench",
        "--replicas",
        "1",
        "-n",
        "2",
        "-t",
        "2",
        "--json-out",
        str(out_json),
        "--plot",
        str(out_png),
        timeout=300,
    )
    assert bench.returncode == 0, bench.stderr
    result = json.loads(out_json.read_text())[0]
    assert result["replicas"] == 1 and result["transfers"] > 0 and result["errors"] == 0
    assert result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
