"""Membership through the admin API: a fourth node joins with --join, catches up, and is removed."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import free_ports

from .conftest import MINTER, ClusterFactory, funded, wait_for


def test_join_catch_up_and_removal(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster()
    holder = SigningKey.generate()
    with WalletClient(cluster.urls) as client:
        funded(client, [holder], 123)
    http_port, raft_port = free_ports(2)
    newcomer = f"127.0.0.1:{raft_port}"
    url = f"http://127.0.0.1:{http_port}"
    command = cluster.join_command(http_port, raft_port)
    with open(os.path.join(cluster.base_dir, "node-3.log"), "ab") as log:
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:

        def members() -> set[str]:
            return {m["raft_address"] for m in httpx.get(cluster.urls[1] + "/v1/status").json()["members"]}

        wait_for(lambda: newcomer in members(), what="the newcomer to be a member")
        wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, what="the newcomer to be ready")
        with WalletClient([url]) as client:
            assert client.balances(public_hex(holder), consistency="linearizable") == {"USD": 123}

        unauthorized = httpx.delete(f"{cluster.urls[0]}/v1/members/{newcomer}")
        assert unauthorized.status_code == 401
        removed = httpx.delete(
            f"{cluster.urls[0]}/v1/members/{newcomer}",
            headers={"Authorization": f"Bearer {cluster.secret}"},
            timeout=30,
        )
        assert removed.status_code == 200, removed.text
        wait_for(lambda: newcomer not in members(), what="the newcomer to be removed")
        with WalletClient(cluster.urls) as client:
            assert client.transfer(holder, public_hex(MINTER), "USD", 1) == "ok", "three members still commit"
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait()
