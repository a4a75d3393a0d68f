"""No metric's own label is one the scrape attaches to its target: Prometheus would keep the target's and
rename the metric's `exported_<name>`, and every query reading the label would read the other one. The
docs' `metric{label,...}` mentions name labels the metric has."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.docs import code_facts, sources

pytestmark = pytest.mark.unit

SCRAPE_CONFIGS = (
    sources.ROOT / "deploy" / "prometheus" / "prometheus.yml",
    sources.ROOT / "deploy" / "prometheus" / "kubernetes-scrape.yml",
)
# Prometheus gives every target these; a relabelling or a static label adds more
ALWAYS = {"job", "instance"}


def _target_labels() -> set[str]:
    found = set(ALWAYS)
    for path in SCRAPE_CONFIGS:
        for job in yaml.safe_load(path.read_text(encoding="utf-8"))["scrape_configs"]:
            for static in job.get("static_configs", []):
                found |= set(static.get("labels", {}))
            found |= {r["target_label"] for r in job.get("relabel_configs", []) if "target_label" in r}
    return found


def _labels() -> dict[str, tuple[str, ...]]:
    """Every `switchyard_*` metric family -> its own label names."""
    from prometheus_client import REGISTRY

    code_facts.metrics()  # imports every module that defines one
    collectors: list[Any] = list(REGISTRY._collector_to_names)
    return {
        c._name: tuple(c._labelnames)
        for c in collectors
        if getattr(c, "_name", "").startswith("switchyard_") and hasattr(c, "_labelnames")
    }


def test_the_scrape_configs_are_read() -> None:
    assert {"service", "job", "instance"} <= _target_labels()
    assert len(_labels()) > 40


def test_no_metric_label_is_a_target_label() -> None:
    targets = _target_labels()
    clashes = {name: sorted(set(labels) & targets) for name, labels in _labels().items()}
    clashes = {name: labels for name, labels in clashes.items() if labels}
    assert not clashes, f"labels the scrape renames exported_*: {clashes}"


_WITH_LABELS = re.compile(r"(?<![\w:])(switchyard_[a-z0-9_]*[a-z0-9])\{([a-z_]+(?:,\s*[a-z_]+)*)\}")


def test_the_docs_name_each_metrics_own_labels() -> None:
    labels = _labels()
    by_series = {
        series: name
        for name, kind in code_facts.metrics().items()
        for series in code_facts.exposed_series(name, kind)
    }
    wrong = []
    for path in [*sources.markdown_files()]:
        for n, line in enumerate(sources.text(path).splitlines(), 1):
            for m in _WITH_LABELS.finditer(line):
                family = by_series.get(m.group(1), m.group(1))
                named = {label.strip() for label in m.group(2).split(",")}
                if family in labels and not named <= set(labels[family]):
                    wrong.append(f"{m.group(0)} ({path.relative_to(sources.ROOT)}:{n}): has {labels[family]}")
    assert not wrong, "\n".join(wrong)
