"""The README's Kubernetes commands, run verbatim (taken from README.md, so the two cannot drift)
on the local cluster: both charts installed, the volumes from the cluster's default StorageClass,
`kubectl get wc` Running with a leader, and a transfer through `kubectl exec ... walletctl`.

The README installs into the namespaces a user would (the operator in "walletcluster", watching
every namespace; the ledger in "default"); everything is uninstalled afterwards."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kube import REPO, Helm, Kubectl, namespace_report

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1800, func_only=True)]

MARKER = "<!-- tests/k8s/test_readme.py runs the blocks marked like this one, in order -->"
# Each command the shell runs, on stderr, after the wall-clock time it starts (bash's xtrace).
TRACE = re.compile(r"^\+ (\d+\.\d+) (.*)$")


def readme_blocks() -> list[str]:
    """The shell blocks of README.md that follow MARKER."""
    blocks = re.findall(re.escape(MARKER) + r"\n```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) >= 2, f"README.md lost its marked blocks ({MARKER})"
    return blocks


def started_at(trace: str, command: str) -> float:
    """When the first command beginning with `command` started, from the xtrace on stderr."""
    for line in trace.splitlines():
        found = TRACE.match(line)
        if found and found.group(2).startswith(command):
            return float(found.group(1))
    raise AssertionError(f"{command!r} never ran:\n{trace[-3000:]}")


@pytest.fixture
def uninstalled(kubectl: Kubectl, helm: Helm) -> Iterator[None]:
    """Removes what the README installs, also when it failed half-way (and reports it then)."""
    yield
    print(namespace_report(kubectl, "default", log_lines=20))
    helm.run("uninstall", "wallet", "--wait", "--timeout=120s", check=False)
    helm.run("uninstall", "walletcluster-operator", "-n", "walletcluster", "--wait", "--timeout=120s", check=False)
    claims = [f"data-wallet-{i}" for i in range(3)]
    kubectl.run("delete", "pvc", *claims, "-n", "default", "--ignore-not-found", "--wait=false", check=False)
    kubectl.run("delete", "namespace", "walletcluster", "--ignore-not-found", "--wait=false", check=False)


def test_the_readme_commands_install_a_working_ledger(
    k8s_node: str, kubectl: Kubectl, uninstalled: None, tmp_path: Path
) -> None:
    script = "set -euo pipefail\nPS4='+ $EPOCHREALTIME '\nset -x\n" + "\n".join(readme_blocks())
    env = {**os.environ, "WALLET_HOME": str(tmp_path / "keys"), "WALLET_PASSWORD": ""}
    done = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, f"the README's commands failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"

    # `kubectl get wc`: Running, with a leader and every member ready.
    assert re.search(r"^wallet\s+3\s+3\s+wallet-\d\s+\d+\s+Running\s", done.stdout, re.M), done.stdout
    status = (kubectl.get("walletcluster", "wallet", "default") or {})["status"]
    assert status["members"] == ["wallet-0", "wallet-1", "wallet-2"] and status["leader"]
    # The volumes came from the default StorageClass's provisioner, not from a test.
    for i in range(3):
        claim = kubectl.get("pvc", f"data-wallet-{i}", "default") or {}
        assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "standard"
    # `wallet balance`: bob holds what alice sent him, attested by the members.
    balances = done.stdout[done.stdout.rindex("account") :]
    assert re.search(r"\bbob\b.*\bUSD\b.*\b25\.00\b", balances), balances
    assert re.search(r"\balice\b.*\bUSD\b.*\b75\.00\b", balances), balances

    first_transfer = started_at(done.stderr, "wallet balance") - started_at(done.stderr, "helm install wallet ")
    print(f"from `helm install wallet` to the first acknowledged transfer: {first_transfer:.1f}s")
