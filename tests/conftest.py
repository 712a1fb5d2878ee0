"""Suite-wide rules: with REQUIRE_ALL=1 (CI) a skipped test is a failure, never a silent pass."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

REQUIRE_ALL = os.environ.get("REQUIRE_ALL") == "1"

# The fixtures of the local Kubernetes (hack/k8s), shared by tests/k8s and tests/e2e.
pytest_plugins = ["tests.k8s.fixtures"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)  # fixtures read it in teardown (logs on failure)
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under REQUIRE_ALL=1 (every test must run in CI): {reason}"
