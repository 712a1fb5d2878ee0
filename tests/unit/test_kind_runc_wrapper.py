"""hack/kind/runc-without-sys-resource: the runc that kind's nodes run under where root lacks
CAP_SYS_RESOURCE. It must remove exactly that capability from the spec runc is handed (a bundle's
config.json for create/run, the --process file for exec), leave everything else alone and pass its
arguments through. The real runc is replaced by a script that records what it was given: starting a
container needs root and a rootfs, and what is checked is the wrapper's edit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

WRAPPER = Path(__file__).resolve().parents[2] / "hack" / "kind" / "runc-without-sys-resource"
ALL = ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_SYS_TIME"]
KINDS = ("bounding", "effective", "permitted", "inheritable", "ambient")


@pytest.fixture
def runc(tmp_path: Path) -> Path:
    """A directory with a `runc` that records its arguments and the files it was pointed at."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "runc"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >{tmp_path}/args\n')
    fake.chmod(0o755)
    return bindir


def _run(bindir: Path, *args: str) -> list[str]:
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    subprocess.run([str(WRAPPER), *args], env=env, check=True)
    return (bindir.parent / "args").read_text().splitlines()


def _capabilities() -> dict[str, list[str]]:
    return {kind: list(ALL) for kind in KINDS}


def test_create_drops_only_cap_sys_resource_from_the_bundle(runc: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = {"ociVersion": "1.0.2", "process": {"args": ["/sbin/init"], "capabilities": _capabilities()}}
    (bundle / "config.json").write_text(json.dumps(spec))
    args = ["--root", "/run/x", "create", "--bundle", str(bundle), "--pid-file", "p", "node"]
    assert _run(runc, *args) == args
    edited = json.loads((bundle / "config.json").read_text())
    want = [c for c in ALL if c != "CAP_SYS_RESOURCE"]
    assert edited["process"]["capabilities"] == {kind: want for kind in KINDS}
    assert edited["process"]["args"] == ["/sbin/init"] and edited["ociVersion"] == "1.0.2"


def test_exec_drops_it_from_the_process_file(runc: Path, tmp_path: Path) -> None:
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": _capabilities()}))
    _run(runc, "exec", f"--process={process}", "--detach", "node")
    edited = json.loads(process.read_text())
    assert all("CAP_SYS_RESOURCE" not in caps for caps in edited["capabilities"].values())
    assert edited["capabilities"]["bounding"] == [c for c in ALL if c != "CAP_SYS_RESOURCE"]


def test_other_commands_pass_through_untouched(runc: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    original = json.dumps({"process": {"capabilities": _capabilities()}})
    (bundle / "config.json").write_text(original)
    # `delete` names no bundle, `state` does not run anything: nothing is edited.
    assert _run(runc, "--root", "/run/x", "state", "node") == ["--root", "/run/x", "state", "node"]
    assert _run(runc, "delete", "--force", "node") == ["delete", "--force", "node"]
    assert (bundle / "config.json").read_text() == original
