"""The SLO recording rules and alerts: promtool checks and the rule unit tests in deploy/prometheus/tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

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


def _panel_expr(board: str, title: str) -> str:
    panels = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / board).read_text())["panels"]
    (panel,) = [p for p in panels if p["title"] == title]
    (target,) = panel["targets"]
    return str(target["expr"])


def _reads(
    tmp_path: Path, expr: str, series: dict[str, str], samples: list[tuple[str, dict[str, Any]]]
) -> None:
    """promtool evaluates `expr` over `series` (series -> values, a minute apart) and expects each
    (eval_time, sample)."""
    case = tmp_path / "panel_test.yml"
    test = {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": [
            {"expr": expr, "eval_time": at, "exp_samples": [sample]} for at, sample in samples
        ],
    }
    case.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": [test]}))
    done = _promtool("test", "rules", str(case))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_sla_dashboards_availability_reads_100_percent_before_the_first_5xx(tmp_path: Path) -> None:
    """The SLA dashboard's headline stat, on a Prometheus that has never seen a 5xx (no such series): a
    ratio with an absent numerator is absent, and the stat read "No data" exactly when all was well."""
    series = {
        'switchyard_gateway_requests_total{route="/v1/chat/completions", status="200"}': "0+100x60",
        'switchyard_gateway_requests_total{route="/v1beta/models/{target:path}", status="200"}': "0+100x60",
    }
    _reads(tmp_path, _panel_expr("sla.json", "Availability, 30 days"), series, [("60m", {"value": 1})])


# a consumer's dead letters, as Prometheus stores them: the target's `service`, the metric's `consumer`
LETTERS_READ = '{service="router", consumer="router-stats", code="invalid_event"}'
LETTERS = f'switchyard_dead_letters_total{LETTERS_READ[:-1]}, instance="a"}}'
QUIET = (
    'switchyard_dead_letters_total{service="router", consumer="router", code="handler_error", instance="a"}'
)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param("_x5 1x75 2x30", id="born-at-1-before-its-first-scrape"),
        pytest.param("0x5 1x75 2x30", id="at-0-from-the-start"),
    ],
)
def test_the_dead_letters_panel_counts_a_consumers_first_letter(tmp_path: Path, values: str) -> None:
    """A replica's first dead letter, at minute 5 (a second at minute 80), shows in the hour's count: on a
    series at 0 from the replica's start, and on one whose first scrape already read 1 (a letter before
    it: increase() over 1 -> 1 reads 0). An hour with none is one line at 0, not one per consumer and
    code (every service has them at 0)."""
    expr = _panel_expr("queues.json", "Dead letters per hour")
    samples = [
        ("10m", {"labels": LETTERS_READ, "value": 1}),
        ("70m", {"labels": '{code="none"}', "value": 0}),
        ("90m", {"labels": LETTERS_READ, "value": 1}),
    ]
    _reads(tmp_path, expr, {LETTERS: values, QUIET: "0x110"}, samples)
