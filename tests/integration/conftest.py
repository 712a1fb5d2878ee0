"""Real node processes on loopback: start, kill, restart, talk HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster

MINTER = SigningKey(bytes([7]) * 32)

ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    started: list[LocalCluster] = []

    def make(size: int = 3, extra_args: tuple[str, ...] = (), start: bool = True) -> LocalCluster:
        cluster = LocalCluster(
            str(tmp_path_factory.mktemp("cluster")), [public_hex(MINTER)], size, extra_args=extra_args
        )
        started.append(cluster)
        if start:
            cluster.start_all()
            cluster.wait_ready(timeout=60)
        return cluster

    yield make
    for cluster in started:
        cluster.stop_all()


@pytest.fixture
def cluster(make_cluster: ClusterFactory) -> LocalCluster:
    return make_cluster()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster for tests that only read and write (no faults), to save start-up time."""
    cluster = LocalCluster(str(tmp_path_factory.mktemp("shared")), [public_hex(MINTER)], 3)
    cluster.start_all()
    cluster.wait_ready(timeout=60)
    yield cluster
    cluster.stop_all()


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    diagnose: Callable[[], str] = lambda: "",
) -> Any:
    """Poll until `predicate` returns something other than None/False; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{diagnose()}")


def funded(client: WalletClient, accounts: list[SigningKey], amount: int, code: str = "USD") -> None:
    """Create `code` if needed and mint `amount` to each account."""
    assert client.create_currency(MINTER, code, 2) in ("ok", "currency_exists")
    for key in accounts:
        assert client.mint(MINTER, public_hex(key), code, amount) == "ok"
