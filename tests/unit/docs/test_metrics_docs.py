"""The metrics the docs, the Prometheus rules and the Grafana dashboards use are the ones the code exports,
and every metric the code exports is documented."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.unit.docs import code_facts, sources

pytestmark = pytest.mark.unit

# `switchyard_...` names in the docs that are not metrics:
NOT_METRICS = {
    "switchyard_app",  # the PostgreSQL role `switchyard ledger app-role` makes (services/audit/README.md)
    "switchyard_cache",  # the Qdrant collection's default name (SWITCHYARD_QDRANT_COLLECTION)
    "switchyard_restored",  # the scratch database of the restore drill (docs/operations/backup-restore.md)
}


def _series() -> dict[str, str]:
    """Every series name the code's metrics are scraped as -> its family."""
    return {
        series: name
        for name, kind in code_facts.metrics().items()
        for series in code_facts.exposed_series(name, kind)
    }


def test_every_metric_the_docs_and_deploy_use_is_exported() -> None:
    series = _series()
    known = set(series) | NOT_METRICS
    unknown = [str(m) for m in sources.metric_mentions() if m.name not in known]
    assert not unknown, "metrics the docs or deploy/ use that the code has not:\n" + "\n".join(unknown)


def test_every_exported_metric_is_documented() -> None:
    series = _series()
    documented = {series[m.name] for m in sources.metric_mentions() if m.name in series}
    missing = sorted(set(code_facts.metrics()) - documented)
    assert not missing, "metrics the code exports that no doc names:\n" + "\n".join(missing)


def _alerts() -> set[str]:
    rules = sorted((sources.ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
    groups = [g for path in rules for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_the_docs_name_the_alerts_the_prometheus_rules_define() -> None:
    named = set()
    for path in sources.markdown_files():
        named |= set(re.findall(r"\b(Switchyard[A-Z]\w+)", path.read_text(encoding="utf-8")))
    alerts = _alerts()
    assert len(alerts) > 10, "the alert rules were not read"
    assert named == alerts, f"no such alert: {sorted(named - alerts)}; undocumented: {sorted(alerts - named)}"


def test_every_allowed_exception_is_still_in_the_docs() -> None:
    assert {m.name for m in sources.metric_mentions()} >= NOT_METRICS, "a stale entry of NOT_METRICS"


def test_an_abbreviated_name_continues_the_last_whole_one() -> None:
    shown = {m.name for m in sources.metric_mentions() if m.where.startswith("services/classifier/")}
    assert "switchyard_classifier_heads_swaps_total" in shown  # `..._heads_swaps_total`


def test_a_counter_is_scraped_with_its_suffix() -> None:
    counter = code_facts.exposed_series("switchyard_x", "counter")
    assert counter == {"switchyard_x_total", "switchyard_x_created"}
    assert "switchyard_h_bucket" in code_facts.exposed_series("switchyard_h", "histogram")
    assert len(code_facts.metrics()) > 40, "the metric modules were not imported"
