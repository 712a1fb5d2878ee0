"""`make run` as the README shows it, and every command of the README's walletctl and Python
client examples run literally against it."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from walletnode.tls import client_context

REPO = pathlib.Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def readme_block(heading: str, language: str) -> str:
    """The first ```language block after the README heading."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"README section {heading!r} has no {language} block"
    return match.group(1)


@pytest.fixture
def dev_cluster(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, dict[str, str]]]:
    """`make run`'s program in a scratch directory (with the repository's .venv beside it)."""
    (tmp_path / ".venv").symlink_to(sys.prefix)
    proc = subprocess.Popen(
        [sys.executable, "-m", "walletnode.devcluster"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        banner = ""
        while "3 nodes up" not in banner:
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                pytest.fail(f"dev cluster did not start:\n{banner}")
            banner += line
        env = dict(os.environ)
        for line in (tmp_path / ".run" / "env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
        yield tmp_path, env
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, "Ctrl-C stops the dev cluster cleanly"


def test_dev_cluster_writes_the_env_the_readme_promises(dev_cluster: tuple[pathlib.Path, dict[str, str]]) -> None:
    _, env = dev_cluster
    assert env["WALLET_URL"] == "https://127.0.0.1:8701,https://127.0.0.1:8702,https://127.0.0.1:8703"
    assert env["WALLET_HOME"] == ".run/keys"
    assert env["WALLET_CA"] == ".run/tls/ca.crt"


def test_dev_cluster_serves_only_https_verified_by_its_ca(dev_cluster: tuple[pathlib.Path, dict[str, str]]) -> None:
    cwd, env = dev_cluster
    status = httpx.get("https://127.0.0.1:8701/v1/status", verify=client_context(str(cwd / env["WALLET_CA"])))
    assert status.status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get("http://127.0.0.1:8701/v1/status", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get("https://127.0.0.1:8701/v1/status", verify=client_context(None), timeout=5)
    plain = subprocess.run(
        [".venv/bin/walletctl", "--url", "http://127.0.0.1:8701", "status"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 2 and "--insecure" in plain.stderr, plain.stderr


def test_every_readme_example_works(dev_cluster: tuple[pathlib.Path, dict[str, str]]) -> None:
    cwd, _ = dev_cluster
    lines = []
    for line in readme_block("walletctl", "sh").splitlines():
        command = line.split("  #")[0].strip()
        if " watch" in command:  # follows the stream until interrupted
            command = f"timeout 5 {command} || [ $? = 124 ]"
        elif " shell" in command:  # interactive: end its input at once
            command += " </dev/null"
        lines.append(command)
    script = "set -euo pipefail\n" + "\n".join(f"echo '+ {c}'\n{c}" for c in lines if c)
    done = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert (cwd / "bench.json").exists() and (cwd / "bench.png").exists()
    assert "750.00" in done.stdout, "alice keeps 750.00 after sending 250.00"

    python = subprocess.run(
        [sys.executable, "-c", readme_block("walletctl", "python")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert python.returncode == 0, python.stderr
    assert python.stdout.splitlines()[0] == "insufficient_funds", python.stdout
