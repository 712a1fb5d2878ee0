"""walletctl's trust options: bad values are usage errors (exit 2) that say what is wrong."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from walletnode.cli.walletctl import main


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--url", "http://127.0.0.1:9", "status"], "--insecure"),
        (["--url", "ftp://127.0.0.1:9", "status"], "not an http:// or https:// URL"),
        (["--node-keys", "wallet-0=abc", "status"], "NAME=<64 hex characters>"),
        (["--ca", "/nonexistent/ca.crt", "status"], "does not exist"),
    ],
)
def test_bad_trust_options_are_usage_errors(args: list[str], said: str, tmp_path: object) -> None:
    done = CliRunner().invoke(main, ["--home", str(tmp_path), *args], env={"WALLET_CA": None})
    assert done.exit_code == 2 and said in done.output, done.output
