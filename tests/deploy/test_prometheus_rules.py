"""The SLO recording rules and alerts: promtool checks and the rule unit tests in deploy/prometheus/tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

# promtool comes from Debian's prometheus package (scripts/test-prerequisites.sh)
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: `make test` installs it (apt-get install prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def test_rules_pass_promtool_check() -> None:
    files = sorted(str(p) for p in (PROM / "rules").glob("*.yml"))
    assert len(files) >= 2
    done = _promtool("check", "rules", *files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests() -> None:
    tests = sorted(str(p) for p in (PROM / "tests").glob("*_test.yml"))
    assert len(tests) >= 2
    done = _promtool("test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(tests)


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: the same error-burn scenario, expecting silence, must not pass."""
    (tmp_path / "rules").symlink_to(PROM / "rules")
    case = tmp_path / "tests" / "wrong_test.yml"
    case.parent.mkdir()
    case.write_text(
        """rule_files: [../rules/slo.yml, ../rules/alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'switchyard_gateway_requests_total{route="/v1/chat/completions", status="200"}'
        values: '0+90x30'
      - series: 'switchyard_gateway_requests_total{route="/v1/chat/completions", status="500"}'
        values: '0+10x30'
    alert_rule_test:
      - {alertname: SwitchyardErrorBudgetBurnFast, eval_time: 20m, exp_alerts: []}
"""
    )
    done = _promtool("test", "rules", str(case))
    assert done.returncode != 0 and "SwitchyardErrorBudgetBurnFast" in done.stdout + done.stderr


def test_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    config = (PROM / "prometheus.yml").read_text().replace("/etc/prometheus/rules/", f"{PROM / 'rules'}/")
    (tmp_path / "prometheus.yml").write_text(config)
    done = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 2 rule files found" in done.stdout + done.stderr


def test_the_sla_dashboards_availability_reads_100_percent_before_the_first_5xx(tmp_path: Path) -> None:
    """The SLA dashboard's headline stat, on a Prometheus that has never seen a 5xx (no such series): a
    ratio with an absent numerator is absent, and the stat read "No data" exactly when all was well."""
    board = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "sla.json").read_text())
    (panel,) = [p for p in board["panels"] if p["title"] == "Availability, 30 days"]
    (target,) = panel["targets"]
    case = tmp_path / "availability_test.yml"
    case.write_text(
        yaml.safe_dump(
            {
                "rule_files": [],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {
                                "series": 'switchyard_gateway_requests_total{route="/v1/chat/completions", '
                                'status="200"}',
                                "values": "0+100x60",
                            },
                            {
                                "series": 'switchyard_gateway_requests_total{route="/v1beta/models/'
                                '{target:path}", status="200"}',
                                "values": "0+100x60",
                            },
                        ],
                        "promql_expr_test": [
                            {"expr": target["expr"], "eval_time": "60m", "exp_samples": [{"value": 1}]}
                        ],
                    }
                ],
            }
        )
    )
    done = _promtool("test", "rules", str(case))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dead_letters_panel_counts_a_services_first_letter(tmp_path: Path) -> None:
    """A service's first dead letter is a series born at 1 (prometheus_client makes the labelled child at
    the first inc()): increase() over it reads 0, and the panel showed no letter at all."""
    board = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "queues.json").read_text())
    (panel,) = [p for p in board["panels"] if p["title"] == "Dead letters per hour"]
    (target,) = panel["targets"]
    series = 'switchyard_dead_letters_total{service="router", code="invalid_event", instance="a"}'
    case = tmp_path / "dead_letters_test.yml"
    case.write_text(
        yaml.safe_dump(
            {
                "rule_files": [],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        # born at minute 5 with one letter, a second at minute 80
                        "input_series": [{"series": series, "values": "_x5 1x75 2x30"}],
                        "promql_expr_test": [
                            {
                                "expr": target["expr"],
                                "eval_time": eval_time,
                                "exp_samples": [
                                    {"labels": '{service="router", code="invalid_event"}', "value": value}
                                ],
                            }
                            for eval_time, value in (("10m", 1), ("70m", 0), ("90m", 1))
                        ],
                    }
                ],
            }
        )
    )
    done = _promtool("test", "rules", str(case))
    assert done.returncode == 0, done.stdout + done.stderr
