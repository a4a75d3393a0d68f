"""Dashboards, rules and runbooks agree with the code: every metric they name exists, every alert has a
runbook."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchyard.gateway.app import create_app
from switchyard.gateway.config import GatewaySettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RUNBOOKS = ROOT / "docs" / "operations" / "runbooks.md"
DECLARATION = re.compile(r"""(Counter|Gauge|Histogram|Summary)\(\s*["'](switchyard_[a-z0-9_]+)["']""")
SERIES = re.compile(r"\b(switchyard[_:][a-zA-Z0-9_:]+)")


def _code_metrics() -> set[str]:
    """Every series the code exposes, with the suffixes prometheus_client adds."""
    names: set[str] = set()
    for path in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]:
        for kind, name in DECLARATION.findall(path.read_text()):
            base = name.removesuffix("_total")
            names.add(name)
            if kind == "Counter":
                names.update({f"{base}_total", f"{base}_created"})
            elif kind in ("Histogram", "Summary"):
                names.update({f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"})
    return names


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _dashboard_exprs() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def test_the_code_declares_the_sla_metrics() -> None:
    code = _code_metrics()
    assert {"switchyard_gateway_requests_total", "switchyard_gateway_request_seconds_bucket"} <= code
    assert "switchyard_consumer_oldest_unacked_age_seconds" in code  # the queue-lag gauge from libs/common


def test_every_metric_in_rules_and_dashboards_exists() -> None:
    known = _code_metrics() | _recorded()
    exprs = [(f"rule {r.get('record') or r.get('alert')}", r["expr"]) for r in _rules()] + _dashboard_exprs()
    missing = {(where, name) for where, expr in exprs for name in SERIES.findall(expr) if name not in known}
    assert not missing, sorted(missing)
    assert len(exprs) > 60


def test_the_slis_count_every_api_route() -> None:
    """The SLIs select the API's requests by route: every face's routes (OpenAI's and Anthropic's /v1/*,
    Gemini's /v1beta/*), never the probes and scrapes. A face left out is not measured at all: its 5xx
    burn no budget and page nobody."""
    selectors = {
        match
        for _, expr in [*((r.get("record"), r["expr"]) for r in _rules()), *_dashboard_exprs()]
        for match in re.findall(r'route=~"([^"]+)"', expr)
    }
    (selector,) = selectors  # one definition of an API request, everywhere
    api = re.compile(selector)  # PromQL anchors its regular expressions at both ends
    paths = create_app(GatewaySettings()).openapi()["paths"]
    outside = {"/healthz", "/readyz", "/metrics"}
    assert outside < set(paths) and any(p.startswith("/v1beta/") for p in paths)
    for path in paths:
        assert bool(api.fullmatch(path)) == (path not in outside), path


def test_dashboards_are_valid_grafana_json() -> None:
    expected = {"sla", "cost", "routing", "providers", "queues"}
    assert {p.stem for p in DASHBOARDS} == expected
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"].startswith("switchyard-") and board["uid"] not in uids
        uids.add(board["uid"])
        assert board["title"] and board["schemaVersion"] >= 36 and board["panels"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "switchyard-prometheus"
            assert panel["targets"], (path.name, panel["title"])
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, (path.name, panel["title"])
    provisioning = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert provisioning["datasources"][0]["uid"] == "switchyard-prometheus"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def test_every_alert_has_a_runbook_entry() -> None:
    alerts = [rule for rule in _rules() if "alert" in rule]
    assert len(alerts) >= 14
    anchors = _anchors(RUNBOOKS.read_text())
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert (ROOT / path).resolve() == RUNBOOKS.resolve(), url
        assert anchor == alert["alert"].lower(), url
        assert anchor in anchors, f"{alert['alert']}: no heading '## {alert['alert']}' in {RUNBOOKS.name}"
        assert alert["labels"]["severity"] in ("page", "ticket")
    sections = set(re.findall(r"^## (Switchyard\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE))
    assert sections == {a["alert"] for a in alerts}, "a runbook section without its alert, or the reverse"


def test_operations_docs_link_to_files_that_exist() -> None:
    for doc in (ROOT / "docs" / "operations").glob("*.md"):
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
