"""The issue's walk-through with the real CLI against three real nodes."""

from __future__ import annotations

import json
import os

from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.keystore import Keystore
from walletnode.localcluster import LocalCluster

from ..walletctl import walletctl
from .conftest import MINTER


def test_usd_mint_and_send_seen_by_every_node(cluster: LocalCluster, tmp_path: os.PathLike[str]) -> None:
    home = os.path.join(tmp_path, "keys")
    Keystore(home).create("minter", "", seed=bytes(MINTER))
    env = {**os.environ, **cluster.client_env(), "WALLET_HOME": home, "WALLET_PASSWORD": ""}
    for name in ("alice", "bob"):
        assert walletctl(env, "keys", "new", name).returncode == 0
    for step in (
        ["currency", "create", "USD", "--scale", "2"],
        ["mint", "alice", "1000.00", "USD"],
        ["send", "bob", "250.00", "USD", "--as", "alice"],
    ):
        done = walletctl(env, *step)
        assert done.returncode == 0, done.stderr
        assert ": ok" in done.stdout
    keys = Keystore(home)
    alice, bob = keys.public("alice"), keys.public("bob")

    # A linearizable read through any single node sees the transfer at once.
    for url in cluster.urls:
        with WalletClient([url], **cluster.trust) as one:
            assert one.balances(alice) == {"USD": 75000}
            assert one.balances(bob) == {"USD": 25000}

    out = walletctl(env, "-o", "json", "balance")
    assert out.returncode == 0
    assert {row["name"]: row["balances"] for row in json.loads(out.stdout)} == {
        "alice": {"USD": 75000},
        "bob": {"USD": 25000},
        "minter": {},
    }

    # Every replica converges to the same audit hash.
    hashes = {cluster.status(i)["audit_hash"] for i in range(3)}  # type: ignore[index]
    assert len(hashes) == 1


def test_rejections_have_their_own_exit_code(cluster: LocalCluster, tmp_path: os.PathLike[str]) -> None:
    home = os.path.join(tmp_path, "keys")
    Keystore(home).create("minter", "", seed=bytes(MINTER))
    Keystore(home).create("mallory", "", seed=bytes(SigningKey.generate()))
    env = {**os.environ, **cluster.client_env(), "WALLET_HOME": home, "WALLET_PASSWORD": ""}
    created = walletctl(env, "-o", "json", "currency", "create", "USD", "--scale", "2")
    assert created.returncode == 0
    refused = walletctl(env, "currency", "create", "EUR", "--scale", "2", "--as", "mallory")
    assert refused.returncode == 3 and "not_a_minter" in refused.stdout
    broke = walletctl(env, "-o", "json", "send", "minter", "1.00", "USD", "--as", "mallory")
    assert broke.returncode == 3 and json.loads(broke.stdout)["result"] == "insufficient_funds"

    # Each id keeps its final result, success or failure, and `show` reads it back.
    shown = json.loads(walletctl(env, "-o", "json", "show", json.loads(broke.stdout)["id"]).stdout)
    assert (shown["result"], shown["index"], shown["command"]["kind"]) == ("insufficient_funds", None, "transfer")
    shown = json.loads(walletctl(env, "-o", "json", "show", json.loads(created.stdout)["id"]).stdout)
    assert (shown["result"], shown["command"]["code"]) == ("ok", "USD") and shown["index"] > 0
    table = walletctl(env, "show", json.loads(broke.stdout)["id"])
    assert table.returncode == 0 and "insufficient_funds" in table.stdout and "mallory" in table.stdout
    unknown = walletctl(env, "show", "ab" * 16)
    assert unknown.returncode == 3 and "not_found" in unknown.stderr
    usage = walletctl(env, "send", "minter", "1.001", "USD", "--as", "mallory")
    assert usage.returncode == 2 and "decimal places" in usage.stderr
    env["WALLET_URL"] = "https://127.0.0.1:9"
    down = walletctl(env, "status")
    assert down.returncode == 4
