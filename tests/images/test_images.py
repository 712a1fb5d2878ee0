"""The container images: built offline by images/build, non-root, labelled, a real 3-node cluster in
Docker, and reproducible (two builds of one commit install the same bytes).

The first test builds the images (cold: a few minutes; then cached: seconds). `make images` beforehand
makes it quick. Skipped only when no Docker engine can run on this machine at all.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey

from walletnode import pki
from walletnode.client import WalletClient
from walletnode.keystore import Keystore
from walletnode.ledger.signing import public_hex
from walletnode.tls import client_context

from ..walletctl import walletctl

pytestmark = [pytest.mark.images, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("DOCKER", "docker")
NODE = "walletcluster/node:dev"
OPERATOR = "walletcluster/operator:dev"
MINTER = SigningKey(bytes([7]) * 32)
OCI = "org.opencontainers.image."


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def run_script(*args: str, timeout: float = 1700) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(REPO / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{output}"
    return done


def inspect(image: str) -> dict[str, Any]:
    return json.loads(docker("image", "inspect", image).stdout)[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def docker_engine() -> None:
    """A Docker engine that answers (installed and started by images/docker-up if need be)."""
    done = subprocess.run([str(REPO / "images/docker-up")], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"no Docker engine can run here: {done.stderr.strip()[-500:]}")


@pytest.fixture(scope="module")
def built(docker_engine: None) -> dict[str, str]:
    """images/build as `make images` runs it; returns what the labels must say."""
    revision = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    epoch = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct", "HEAD"], capture_output=True, text=True, check=True
    )
    run_script("images/build")
    with open(REPO / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    created = dt.datetime.fromtimestamp(int(epoch.stdout), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"revision": revision.stdout.strip(), "created": created, "version": version}


# -- (a) built, non-root, labelled ----------------------------------------------------------------


@pytest.mark.parametrize("image", [NODE, OPERATOR])
def test_image_is_non_root_and_labelled(built: dict[str, str], image: str) -> None:
    info = inspect(image)
    config = info["Config"]
    assert config["User"] == "10001:10001"
    labels = config["Labels"]
    assert labels[OCI + "version"] == built["version"]
    assert labels[OCI + "revision"] == built["revision"]
    assert labels[OCI + "created"] == built["created"]
    assert labels[OCI + "source"].startswith("https://")
    # The process really runs unprivileged, and with a read-only root filesystem.
    ids = docker("run", "--rm", "--read-only", "--entrypoint", "id", image).stdout
    assert ids.startswith("uid=10001") and "gid=10001" in ids, ids
    # pip stayed in the build stage.
    pip = docker("run", "--rm", "--read-only", "--entrypoint", "python", image, "-m", "pip", "--version", check=False)
    assert pip.returncode != 0, "the final image carries no pip"


def test_node_image_entrypoint_is_walletnode_serve(built: dict[str, str]) -> None:
    config = inspect(NODE)["Config"]
    assert config["Entrypoint"][:2] == ["walletnode", "serve"]
    helped = docker("run", "--rm", "--read-only", NODE, "--help")
    assert "Run one ledger node" in helped.stdout
    # The identity comes from the hostname, as in a StatefulSet.
    whoami = docker(
        "run",
        "--rm",
        "--read-only",
        "--hostname",
        "ledger-2",
        "--entrypoint",
        "walletnode",
        NODE,
        "whoami",
        "--service",
        "ledger-peers",
        "--namespace",
        "prod",
    )
    identity = json.loads(whoami.stdout)
    assert "ledger-2.ledger-peers.prod.svc:7700" in json.dumps(identity)


def test_operator_image_runs_python_m_walletoperator(built: dict[str, str]) -> None:
    config = inspect(OPERATOR)["Config"]
    assert config["Entrypoint"] == ["python", "-m", "walletoperator"]
    imported = docker(
        "run",
        "--rm",
        "--read-only",
        "--entrypoint",
        "python",
        OPERATOR,
        "-c",
        "import kopf, kubernetes, walletoperator, walletnode.client; print('ok')",
    )
    assert imported.stdout.strip() == "ok"


# -- (b) a 3-node cluster of the node image ---------------------------------------------------------


class DockerCluster:
    """Three `walletcluster/node:dev` containers on a user-defined network, like a StatefulSet,
    serving HTTPS with a certificate from a CA of the test's own (mounted read-only, as a Secret is)."""

    def __init__(self, tls_dir: Path, size: int = 3) -> None:
        self.prefix = f"wc-test-{secrets.token_hex(4)}"
        self.network = self.prefix
        self.size = size
        self.containers: list[str] = []
        self.urls: list[str] = []
        self.tls_dir = tls_dir
        ca = pki.make_ca("images test CA")
        pair = pki.issue(ca, ["localhost"], ["127.0.0.1"])
        tls_dir.mkdir(exist_ok=True)
        (tls_dir / "ca.crt").write_bytes(ca.cert)
        (tls_dir / "tls.crt").write_bytes(pair.cert)
        (tls_dir / "tls.key").write_bytes(pair.key)
        (tls_dir / "tls.key").chmod(0o644)  # the container's uid 10001 reads it; a test-only key
        self.ca_file = str(tls_dir / "ca.crt")
        self.verify = client_context(self.ca_file)

    def start(self) -> None:
        docker("network", "create", "--label", "io.walletcluster.test=images", self.network)
        secret = secrets.token_hex(16)
        for i in range(self.size):
            name = f"{self.prefix}-wallet-{i}"
            docker(
                "run", "--detach", "--name", name, "--label", "io.walletcluster.test=images",
                "--hostname", f"wallet-{i}", "--network", self.network, "--network-alias", f"wallet-{i}.wallet",
                "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/data:uid=10001,gid=10001,mode=0700",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--env", f"WALLET_CLUSTER_SECRET={secret}",
                "--volume", f"{self.tls_dir}:/etc/walletcluster/tls:ro",
                "--env", "WALLET_TLS_CERT=/etc/walletcluster/tls/tls.crt",
                "--env", "WALLET_TLS_KEY=/etc/walletcluster/tls/tls.key",
                "--publish", "127.0.0.1::8700",
                NODE, "--minter", public_hex(MINTER),
            )  # fmt: skip
            self.containers.append(name)
        for name in self.containers:
            port = docker("port", name, "8700/tcp").stdout.split()[0].rsplit(":", 1)[1]
            self.urls.append(f"https://127.0.0.1:{port}")

    def statuses(self) -> list[dict[str, Any] | None]:
        found: list[dict[str, Any] | None] = []
        for url in self.urls:
            try:
                r = httpx.get(url + "/v1/status", timeout=3, verify=self.verify)
                found.append(r.json() if r.status_code == 200 else None)
            except (httpx.HTTPError, ValueError):
                found.append(None)
        return found

    def wait(self, what: str, ok: Any, timeout: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.statuses()
            if all(statuses) and ok(statuses):
                return statuses  # type: ignore[return-value]
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached in {timeout}s; statuses: {statuses}\n{self.diagnose()}")
            time.sleep(0.5)

    def diagnose(self) -> str:
        parts = []
        for name in self.containers:
            state = docker("inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}}", name, check=False)
            logs = docker("logs", "--tail", "30", name, check=False)
            parts.append(f"--- {name}: {state.stdout.strip()}\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)

    def stop(self) -> None:
        for name in self.containers:
            docker("rm", "--force", "--volumes", name, check=False)
        docker("network", "rm", self.network, check=False)


@pytest.fixture
def docker_cluster(built: dict[str, str], tmp_path: Path) -> Iterator[DockerCluster]:
    cluster = DockerCluster(tmp_path / "tls")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
    assert not docker("ps", "-aq", "--filter", f"name={cluster.prefix}").stdout.strip()
    assert cluster.network not in docker("network", "ls", "--format", "{{.Name}}").stdout.split()


def test_three_containers_form_a_cluster_that_agrees(docker_cluster: DockerCluster, tmp_path: Path) -> None:
    cluster = docker_cluster
    statuses = cluster.wait(
        "one leader known to all three nodes",
        lambda s: len({x["leader"] for x in s}) == 1 and s[0]["leader"] and all(x["has_quorum"] for x in s),
    )
    assert sorted(s["name"] for s in statuses) == ["wallet-0", "wallet-1", "wallet-2"]
    assert [m["raft_address"] for m in statuses[0]["members"]] == [f"wallet-{i}.wallet:7700" for i in range(3)]

    # walletctl from the host, as a user would.
    home = str(tmp_path / "keys")
    Keystore(home).create("minter", "", seed=bytes(MINTER))
    env = {
        **os.environ,
        "WALLET_URL": ",".join(cluster.urls),
        "WALLET_CA": cluster.ca_file,
        "WALLET_HOME": home,
        "WALLET_PASSWORD": "",
    }
    for name in ("alice", "bob"):
        made = walletctl(env, "keys", "new", name)
        assert made.returncode == 0, made.stderr
    for step in (
        ["currency", "create", "GEM", "--scale", "2"],
        ["mint", "alice", "100.00", "GEM"],
        ["send", "bob", "25.50", "GEM", "--as", "alice"],
    ):
        done = walletctl(env, *step)
        assert done.returncode == 0, f"walletctl {' '.join(step)}: {done.stdout}{done.stderr}\n{cluster.diagnose()}"
        assert ": ok" in done.stdout, done.stdout

    # And the Python client, through each node in turn.
    keys = Keystore(home)
    alice, bob = keys.public("alice"), keys.public("bob")
    carol = SigningKey(bytes([9]) * 32)
    for url in cluster.urls:
        with WalletClient([url], ca=cluster.ca_file) as client:
            assert client.balances(bob) == {"GEM": 2550}
            assert client.mint(MINTER, public_hex(carol), "GEM", 1000) == "ok"
            assert client.transfer(carol, alice, "GEM", 100) == "ok"
    with WalletClient(cluster.urls, ca=cluster.ca_file) as client:
        assert client.balances(alice) == {"GEM": 10000 - 2550 + 300}
        assert client.balances(public_hex(carol)) == {"GEM": 2700}

    # Every replica applied the same entries: same index, same audit hash.
    agreed = cluster.wait(
        "the same applied index and audit hash on all three nodes",
        lambda s: len({(x["applied_index"], x["audit_hash"]) for x in s}) == 1,
    )
    assert agreed[0]["applied_index"] > 0
    assert len(agreed[0]["audit_hash"]) == 64
    # Nothing but /data and /tmp was writable, and the nodes never ran as root.
    for name in cluster.containers:
        assert docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", name).stdout.strip() == "true"
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"


# -- (c) reproducible ---------------------------------------------------------------------------------


def test_two_builds_of_one_commit_install_the_same_files(built: dict[str, str]) -> None:
    """Both builds from the committed tree (--source HEAD) without any cache: same files, same bytes."""
    tags = [f"repro-{secrets.token_hex(3)}" for _ in range(2)]
    try:
        for tag in tags:
            run_script("images/build", "--source", "HEAD", "--no-cache", "--tag", tag, "--quiet")
        for image in ("node", "operator"):
            a, b = (f"walletcluster/{image}:{tag}" for tag in tags)
            compared = subprocess.run([str(REPO / "images/compare"), a, b], capture_output=True, text=True, timeout=600)
            assert compared.returncode == 0, compared.stdout + compared.stderr
            assert "filesystem: identical" in compared.stdout
            assert "config: identical" in compared.stdout
    finally:
        for tag in tags:
            for image in ("node", "operator", "node-build", "operator-build"):
                docker("image", "rm", f"walletcluster/{image}:{tag}", check=False)
        docker("image", "prune", "--force", "--filter", "label=io.walletcluster.base.key", check=False)
