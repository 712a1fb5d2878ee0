"""Attested reads: a replica that lies about balances is outvoted and named."""

from __future__ import annotations

import os
import random
import subprocess

from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex

from .conftest import MINTER, ClusterFactory


def test_the_client_rejects_a_lying_replica_and_names_it(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(start=False)
    cluster.env["WALLETNODE_ALLOW_TEST_FAULTS"] = "1"
    cluster.start(0)
    cluster.start(1)
    cluster.start(2, cluster.command(2) + ["--test-fault", "lie-on-reads"])
    cluster.wait_ready(timeout=60)
    rng = random.Random(2026)
    holders = [SigningKey.generate() for _ in range(12)]
    amounts = {public_hex(h): rng.randint(1, 10**6) for h in holders}
    with WalletClient(cluster.urls, **cluster.trust) as client:
        assert client.create_currency(MINTER, "USD", 2) == "ok"
        for account, amount in amounts.items():
            assert client.mint(MINTER, account, "USD", amount) == "ok"
        for _ in range(60):
            account = rng.choice([*amounts, public_hex(SigningKey.generate())])  # some unknown accounts too
            attested = client.attested_balances(account)
            expected = {"USD": amounts[account]} if account in amounts else {}
            assert attested.balances == expected
            assert sorted(attested.agreeing) == ["wallet-0", "wallet-1"]
            assert list(attested.dissenting) == ["wallet-2"], attested.dissenting


def test_test_faults_are_refused_unless_enabled(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(start=False)
    env = {k: v for k, v in os.environ.items() if k != "WALLETNODE_ALLOW_TEST_FAULTS"}
    done = subprocess.run(
        cluster.command(0) + ["--test-fault", "lie-on-reads"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "for tests only" in done.stderr
