"""`make run` as the README shows it: three nodes on the fixed ports, .run/env, Ctrl-C to stop."""

from __future__ import annotations

import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import pytest


def test_dev_cluster_starts_serves_and_stops_on_ctrl_c(tmp_path: os.PathLike[str]) -> None:
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
        env_file = os.path.join(tmp_path, ".run", "env")
        env = dict(os.environ)
        for line in pathlib.Path(env_file).read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
        assert env["WALLET_URL"] == "http://127.0.0.1:8701,http://127.0.0.1:8702,http://127.0.0.1:8703"
        assert env["WALLET_HOME"] == ".run/keys"
        created = subprocess.run(
            [sys.executable, "-m", "walletnode.cli.walletctl", "currency", "create", "USD", "--scale", "2"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0 and "ok" in created.stdout, created.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
