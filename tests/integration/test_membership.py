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
    with WalletClient(cluster.urls, **cluster.trust) as client:
        funded(client, [holder], 123)
    http_port, raft_port, admin_port = free_ports(3)
    newcomer = f"127.0.0.1:{raft_port}"
    url = f"https://127.0.0.1:{http_port}"
    command = cluster.join_command(http_port, raft_port, admin_port)
    with open(os.path.join(cluster.base_dir, "node-3.log"), "ab") as log:
        node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:

        def members() -> set[str]:
            status = httpx.get(cluster.urls[1] + "/v1/status", verify=cluster.verify).json()
            return {m["raft_address"] for m in status["members"]}

        wait_for(lambda: newcomer in members(), what="the newcomer to be a member")
        wait_for(
            lambda: httpx.get(url + "/readyz", verify=cluster.verify).status_code == 200,
            what="the newcomer to be ready",
        )
        with WalletClient([url], **cluster.trust) as client:
            assert client.balances(public_hex(holder), consistency="linearizable") == {"USD": 123}

        path = f"/v1/members/{newcomer}"
        unauthorized = httpx.delete(cluster.admin_urls[0] + path, verify=cluster.verify)
        assert unauthorized.status_code == 401
        on_client_port = httpx.delete(cluster.urls[0] + path, verify=cluster.verify)
        assert on_client_port.status_code == 404, "the client port serves no admin route"
        leader = wait_for(cluster.leader, what="a leader")
        removed = cluster.admin_request(leader, "DELETE", path, timeout=30)
        assert removed.status_code == 200, removed.text
        wait_for(lambda: newcomer not in members(), what="the newcomer to be removed")
        with WalletClient(cluster.urls, **cluster.trust) as client:
            assert client.transfer(holder, public_hex(MINTER), "USD", 1) == "ok", "three members still commit"
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait()
