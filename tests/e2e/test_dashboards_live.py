"""Every Grafana panel's query, and every recording rule, returns series from a Prometheus scraping every
service of a running stack after ordinary traffic: a query that reads "No data" on a healthy stack (a wrong
metric or label name, a ratio or a rate over a counter that is only born at its first error) is a broken
panel."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
import yaml

from tests.e2e.conftest import RunningStack
from tests.e2e.prometheus import RULES, query, running_prometheus

pytestmark = pytest.mark.e2e

DASHBOARDS = RULES.parents[2] / "deploy" / "grafana" / "dashboards"


@pytest.fixture
def prometheus(stack: RunningStack, tmp_path: Path) -> Iterator[str]:
    targets = [
        {"targets": [address], "labels": {"service": service}}
        for service, address in stack.metrics_targets.items()
    ]
    with running_prometheus(targets, tmp_path) as url:
        yield url


def _panel_queries() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: {panel['title']}", target["expr"])
        for path in sorted(DASHBOARDS.glob("*.json"))
        for panel in json.loads(path.read_text())["panels"]
        for target in panel["targets"]
    ]


def _recording_rules() -> list[tuple[str, str]]:
    return [
        (f"rule {rule['record']}", rule["expr"])
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]


def _has_data(url: str, expr: str) -> bool:
    """What Grafana draws: at least one series with a number (NaN, a quantile of no observations, is none)."""
    return any(series["value"][1] != "NaN" for series in query(url, expr))


def _traffic(client: httpx.Client) -> None:
    """What a day brings, once: answers, streams, embeddings, a client's mistakes."""
    chat = {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as streamed:
        assert streamed.status_code == 200
        assert any(line.startswith("data: [DONE]") for line in streamed.iter_lines())
    embedded = client.post("/v1/embeddings", json={"model": "local/all-minilm-l6-v2", "input": ["hello"]})
    assert embedded.status_code == 200, embedded.text
    assert client.post("/v1/chat/completions", content=b"{not json").status_code == 400
    assert client.post("/v1/chat/completions", json={**chat, "model": "nope/none"}).status_code == 404


def test_every_panel_and_recording_rule_has_data_under_traffic(stack: RunningStack, prometheus: str) -> None:
    queries = _panel_queries() + _recording_rules()
    assert len(queries) > 90
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=stack.base_url, timeout=120) as client:
        client.headers["Authorization"] = f"Bearer {stack.api_key}"
        # every target up before the traffic, so a rate sees each counter move rather than be born
        while len(query(prometheus, 'up{job="switchyard"} == 1')) < len(stack.metrics_targets):
            assert time.monotonic() < deadline, query(prometheus, "up")
            time.sleep(0.5)
        # two rounds a few scrapes apart: a series born in the first moves in the second
        for _ in range(2):
            _traffic(client)
            time.sleep(3)
    missing = [(where, expr) for where, expr in queries if not _has_data(prometheus, expr)]
    while missing and time.monotonic() < deadline:  # the rules' windows fill a second at a time
        time.sleep(1)
        missing = [(where, expr) for where, expr in missing if not _has_data(prometheus, expr)]
    assert not missing, "\n".join(f"{where}: {expr}" for where, expr in missing)


def _panel(board: str, title: str) -> str:
    (panel,) = [p for p in json.loads((DASHBOARDS / board).read_text())["panels"] if p["title"] == title]
    (target,) = panel["targets"]
    return str(target["expr"])


def _alert(name: str) -> str:
    (rule,) = [
        rule
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") == name
    ]
    return str(rule["expr"])


async def test_a_first_dead_letter_shows_on_the_panel_and_fires_its_alert(
    stack: RunningStack, prometheus: str
) -> None:
    """One bad event, dead-lettered by the classifier's and audit's consumers: the panel shows it and the
    alert fires, each by the consumer (the metric's `consumer`; `service` is the scrape target's, and a
    metric label of that name would be read as `exported_service`)."""
    deadline = time.monotonic() + 30
    while not query(prometheus, 'up{job="switchyard", service="classifier"} == 1'):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.5)
    nc = await nats.connect(stack.nats_url)
    try:
        await nc.jetstream().publish(
            "switchyard.task.submitted", b"not an event", headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
    finally:
        await nc.close()
    panel, alert = _panel("queues.json", "Dead letters per hour"), _alert("SwitchyardDeadLetters")
    letters: dict[str, float] = {}
    firing: set[str] = set()
    while time.monotonic() < deadline + 30 and not ({"classifier", "audit"} <= letters.keys() & firing):
        letters = {
            series["metric"].get("consumer", ""): float(series["value"][1])
            for series in query(prometheus, panel)
            if series["metric"].get("code") == "invalid_event"
        }
        firing = {series["metric"]["consumer"] for series in query(prometheus, alert)}
        await asyncio.sleep(1)
    assert letters.get("classifier", 0) >= 1 and letters.get("audit", 0) >= 1, letters
    assert {"classifier", "audit"} <= firing, firing
