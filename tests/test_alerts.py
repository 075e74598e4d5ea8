"""The Prometheus alerting rules in deploy/prometheus: valid, unit-tested with promtool, wired in, documented.

promtool (Debian's `prometheus` package; .ci/run installs it) checks the rules and the configuration that
loads them, and runs alerts.test.yml, whose input series make each alert fire in one case and stay silent
in another. Without promtool these tests are skipped on a developer's machine, and fail under CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import ROOT
from tests.support.promql import defined_metrics, exposed_series, promql_metric_names

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
OBSERVABILITY_DOC = ROOT / "docs" / "observability.md"
# What issue 19 asks the rules to cover, by the alert that covers it.
REQUIRED_ALERTS = {
    "JobBacklogGrowing",  # a backlog growing for 10 minutes
    "JobTypeWithoutExecutor",  # no executor serving a type that has READY jobs
    "JobsDeadLettered",  # a FAILED rate above a threshold
    "NoSchedulerLeader",
    "WebhookDeliveriesFailing",
    "DatabaseErrors",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("promtool is missing under CI: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus); CI installs and runs it")
    return path


def run_promtool(*args: str) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def test_promtool_accepts_the_rules_and_the_configuration_that_loads_them() -> None:
    assert "SUCCESS" in run_promtool("check", "rules", str(RULES.relative_to(ROOT)))
    # check config also checks every rule file the configuration names.
    output = run_promtool("check", "config", str(CONFIG.relative_to(ROOT)))
    assert "1 rule files found" in output


def test_the_alert_unit_tests_pass() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", str(RULE_TESTS.relative_to(ROOT)))


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_silent() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(alerts()) >= REQUIRED_ALERTS
    assert not set(alerts()) - fires, f"never shown firing: {set(alerts()) - fires}"
    assert not set(alerts()) - silent, f"never shown silent: {set(alerts()) - silent}"
    assert (fires | silent) <= set(alerts()), "a test names an alert that does not exist"


def test_every_alert_says_what_to_check_first_and_is_documented() -> None:
    doc = OBSERVABILITY_DOC.read_text()
    for name, rule in alerts().items():
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), f"{name} has no summary"
        runbook = annotations.get("runbook", "")
        assert runbook and "\n" not in runbook, f"{name} needs a one-line runbook annotation"
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name
        assert f"`{name}`" in doc, f"docs/observability.md does not describe {name}"


def test_the_rules_read_only_metrics_the_services_export() -> None:
    series = exposed_series(defined_metrics())
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        names = promql_metric_names(rule["expr"])
        assert names, f"no metric in {rule['expr']!r}"
        unknown = names - series - recorded
        assert not unknown, (
            f"{rule.get('alert') or rule['record']} reads {unknown}, which no metrics.py of services/, shared/ defines"
        )


def test_prometheus_loads_the_rules_where_compose_mounts_them() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {
        str(volume).split(":")[0]: str(volume).split(":")[1] for volume in compose["services"]["prometheus"]["volumes"]
    }
    config_in_container = Path(mounts["./deploy/prometheus/prometheus.yml"])
    for rule_file in config["rule_files"]:
        host = (CONFIG.parent / rule_file).resolve()
        assert host == RULES
        assert mounts.get(f"./{host.relative_to(ROOT)}") == str(config_in_container.parent / rule_file)
