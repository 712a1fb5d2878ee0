"""The alert rules (the chart's one rules file): valid, and each alert tested by `promtool test rules`
on synthetic series, both firing and staying silent."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.metrics import ALERTS, REPO, alert_rules, promtool

CASES = Path(__file__).with_name("alert_rules_test.yaml")
RUNBOOKS = REPO / "docs" / "operations.md"


def test_rules_file_is_valid_and_every_alert_explains_itself() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
        assert str(annotations["runbook_url"]).endswith(f"/docs/operations.md#{str(rule['alert']).lower()}")
        assert f"### {rule['alert']}\n" in RUNBOOKS.read_text(), f"{rule['alert']}: no runbook in {RUNBOOKS.name}"


def test_every_alert_fires_and_stays_silent_under_promtool() -> None:
    result = promtool("test", "rules", CASES.name, cwd=CASES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = [case for test in yaml.safe_load(CASES.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no case where it stays silent"
