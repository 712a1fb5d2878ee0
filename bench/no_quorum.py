"""How long a node that knows no leader with a quorum takes to answer `503 unavailable`.

    python -m bench.no_quorum [--tries N]

Two situations, on real node processes on loopback: a lone node (the other two members of its
three-node cluster never started), and the survivor of a three-node cluster whose other two
members were SIGKILLed (one write sent at once, while the survivor still believes in its leader,
and one a few seconds later). Each try sends one signed transfer and one linearizable read and
prints the answers; the end shows the median and maximum seconds per kind of request.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass

import httpx
import msgspec
from nacl.signing import SigningKey

from walletnode.client import WalletClient
from walletnode.ledger.signing import public_hex
from walletnode.localcluster import LocalCluster


@dataclass(frozen=True)
class Answer:
    status: int
    error: str | None
    seconds: float


def timed(http: httpx.Client, method: str, url: str, body: object = None) -> Answer:
    """One request, its status, its error code (if any) and how long it took."""
    started = time.monotonic()
    r = http.request(method, url, content=msgspec.json.encode(body) if body is not None else None)
    seconds = time.monotonic() - started
    error = r.json().get("error") if r.status_code >= 400 else None
    return Answer(r.status_code, error, seconds)


def write_and_read(cluster: LocalCluster, i: int) -> tuple[Answer, Answer, str]:
    """A signed transfer and a linearizable read to node i; also returns the transfer's id."""
    url = cluster.urls[i]
    sender = SigningKey.generate()
    with WalletClient([url], deadline_s=5, **cluster.trust) as client:
        transfer = client.signed_transfer(sender, public_hex(SigningKey.generate()), "USD", 1)
    command = msgspec.to_builtins(transfer)
    command.pop("kind", None)
    with httpx.Client(timeout=30, verify=cluster.verify) as http:
        write = timed(http, "POST", url + "/v1/transfers", {"commands": [command]})
        read = timed(http, "GET", url + f"/v1/accounts/{public_hex(sender)}/balances")
    return write, read, transfer.id


def wait_healthy(cluster: LocalCluster, i: int, timeout: float = 30.0) -> None:
    url = cluster.urls[i]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1, verify=cluster.verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def measure(tries: int) -> dict[str, list[Answer]]:
    minter = public_hex(SigningKey.generate())
    answers: dict[str, list[Answer]] = {}

    def record(kind: str, write: Answer, read: Answer) -> None:
        answers.setdefault(f"{kind} write", []).append(write)
        answers.setdefault(f"{kind} read", []).append(read)
        print(f"{kind}: write {write}, read {read}", flush=True)

    with tempfile.TemporaryDirectory() as base:
        lone = LocalCluster(base + "/lone", [minter], 3)
        lone.start(0)
        try:
            wait_healthy(lone, 0)
            time.sleep(3)  # past the start-up grace
            for _ in range(tries):
                record("lone node", *write_and_read(lone, 0)[:2])
        finally:
            lone.stop_all()
        cluster = LocalCluster(base + "/three", [minter], 3)
        cluster.start_all()
        try:
            for _ in range(tries):
                cluster.wait_ready(timeout=60)
                cluster.kill(1)
                cluster.kill(2)
                record("just after 2 of 3 killed", *write_and_read(cluster, 0)[:2])
                time.sleep(3)
                record("3 s after 2 of 3 killed", *write_and_read(cluster, 0)[:2])
                cluster.start(1)
                cluster.start(2)
        finally:
            cluster.stop_all()
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=5)
    answers = measure(parser.parse_args().tries)
    for kind, runs in answers.items():
        seconds = [a.seconds for a in runs]
        codes = sorted({f"{a.status} {a.error}" for a in runs})
        print(f"{kind}: {', '.join(codes)}; median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")


if __name__ == "__main__":
    main()
