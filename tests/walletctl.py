"""Running walletctl as a user does: a process of its own, configured by its environment."""

from __future__ import annotations

import subprocess
import sys


def walletctl(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "walletnode.cli.walletctl", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        input=stdin,
    )
