"""Debian's Prometheus scrapes the running stack's gateway with Switchyard's SLO rules loaded, and the SLA
series are read back through its HTTP API (deploy/prometheus/rules, issue 9)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RunningStack
from tests.e2e.prometheus import query, running_prometheus

pytestmark = pytest.mark.e2e


@pytest.fixture
def prometheus(stack: RunningStack, tmp_path: Path) -> Iterator[str]:
    gateway = {"targets": [f"127.0.0.1:{stack.http_port}"], "labels": {"service": "gateway"}}
    with running_prometheus([gateway], tmp_path) as url:
        yield url


def _value(url: str, expr: str, *, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        result = query(url, expr)
        if result and result[0]["value"][1] not in ("NaN",):
            return float(result[0]["value"][1])
        assert time.monotonic() < deadline, f"no value for {expr}"
        time.sleep(0.5)


def _answers_counted(exposed: str) -> float:
    """The answers the gateway's own-time histogram has counted, over its routes (0 before the first)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposed)
        if family.name == "switchyard_gateway_overhead_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    )


def test_prometheus_reads_the_sla_series_of_a_running_stack(stack: RunningStack, prometheus: str) -> None:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=120) as client:
        # API routes only: the SLIs do not depend on a model answering (the other e2e tests cover that)
        for _ in range(5):
            assert client.get("/v1/models").status_code == 200
        assert client.post("/v1/chat/completions", content=b"{not json").status_code == 400
        # answers: the latency SLIs are of answers' own time (the local model's taken away); a series is
        # born at its first answer, so a rate sees the second one, after a scrape has seen the first (the
        # stack is the other e2e tests' too: counted from what the gateway says it has now)
        answer = {"model": "auto", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}
        before = _answers_counted(client.get("/metrics").text)
        for n in range(1, 3):
            answered = client.post("/v1/chat/completions", json=answer)
            assert answered.status_code == 200, answered.text
            assert "x-switchyard-overhead-ms" in answered.headers
            counted = _value(prometheus, f"sum(switchyard_gateway_overhead_seconds_count) >= {before + n}")
            assert counted >= before + n
        deadline = time.monotonic() + 15  # keep traffic coming while Prometheus collects a few samples
        while time.monotonic() < deadline and not query(prometheus, "switchyard:gateway_requests:rate5m > 0"):
            client.get("/v1/models")
            time.sleep(0.5)

    assert _value(prometheus, 'up{job="switchyard", service="gateway"}') == 1
    assert _value(prometheus, "switchyard:gateway_up:max") == 1
    assert _value(prometheus, "switchyard:gateway_unavailable:ratio_avg5m") == 0
    assert _value(prometheus, "switchyard:gateway_requests:rate5m") > 0
    # a 400 is the client's error: it does not spend the availability budget
    assert _value(prometheus, "switchyard:gateway_errors:ratio_rate5m") == 0
    p50 = _value(prometheus, "switchyard:gateway_request_seconds:p50_5m")
    p99 = _value(prometheus, "switchyard:gateway_request_seconds:p99_5m")
    assert 0 < p50 <= p99 <= 120
    own = _value(prometheus, "switchyard:gateway_overhead_seconds:p50_5m")
    assert 0 < own <= 2  # one answer's own time, well inside the objective on an idle stack
    slow = _value(prometheus, "switchyard:gateway_slower_than_2s:ratio_rate5m")
    assert 0 <= slow <= 1
    # no SLO alert fires on a healthy stack
    firing = [
        a["labels"]["alertname"]
        for a in httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        if a["state"] == "firing"
    ]
    assert not [name for name in firing if "Budget" in name or "Latency" in name], firing
