"""One trace per task: the stack that `make run` starts, with an OTLP endpoint set, exports the spans of
every service a request passes through, in one trace that continues the caller's `traceparent`, each
span the child of the one whose event it handled; the provider call carries OpenTelemetry's GenAI
attributes; no span carries the prompt or the answer."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from switchyard.common import subjects
from tests.e2e.conftest import RunningStack, start_stack, stop_stack
from tests.support.fake_otlp import FakeCollector, ReceivedSpan
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.e2e
PROMPT = "Say hello to the tracing team."
SERVER, CLIENT, CONSUMER = 2, 3, 5


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, FakeCollector]]:
    collector = FakeCollector()
    with BackgroundServer(collector.app) as server:
        base = tmp_path_factory.mktemp("traced")
        saved = dict(os.environ)
        # OpenTelemetry's own variables, as an operator sets them; a short batch delay for the test.
        os.environ.update(OTEL_EXPORTER_OTLP_ENDPOINT=server.url, OTEL_BSP_SCHEDULE_DELAY="200")
        try:
            running = start_stack(base / "var", base / "up.log")
        finally:
            os.environ.clear()
            os.environ.update(saved)
        try:
            yield running, collector
        finally:
            stop_stack(running)


def _wait(collector: FakeCollector, trace_id: str, done: object, timeout: float = 30) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout
    while True:
        spans = collector.in_trace(trace_id)
        if done(spans) or time.monotonic() > deadline:  # type: ignore[operator]
            return spans
        time.sleep(0.2)


def _one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == f"switchyard-{service}" and s.name == name]
    assert len(found) == 1, (service, name, [(s.service, s.name) for s in spans])
    return found[0]


def test_a_request_is_one_trace_through_every_service(traced: tuple[RunningStack, FakeCollector]) -> None:
    stack, collector = traced
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {stack.api_key}", "traceparent": f"00-{trace_id}-{caller}-01"},
        json={"model": "auto", "max_tokens": 12, "messages": [{"role": "user", "content": PROMPT}]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    answer = r.json()["choices"][0]["message"]["content"]
    task_id = r.headers["x-switchyard-task-id"]

    # the gateway's latency bucket links to this trace (an exemplar), for a scraper that takes OpenMetrics
    # (observed as the response ends, so a scrape may come a moment before it)
    def linked() -> bool:
        scraped = httpx.get(
            f"{stack.base_url}/metrics",
            headers={"accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        ).text
        return any(
            line.startswith("switchyard_gateway_request_seconds_bucket")
            and 'route="/v1/chat/completions"' in line
            and f'trace_id="{trace_id}"' in line
            for line in scraped.splitlines()
        )

    deadline = time.monotonic() + 5
    while not linked():
        assert time.monotonic() < deadline, "no exemplar links the latency bucket to the trace"
        time.sleep(0.1)

    def complete(spans: list[ReceivedSpan]) -> bool:
        services = {s.service for s in spans}
        names = {s.name for s in spans}
        # the gateway's server span ends after the response (its settlement), so it may be exported after
        # billing's and audit's on a loaded machine: waited for too
        return (
            {"switchyard-billing", "switchyard-audit", "switchyard-gateway"} <= services
            and "POST /v1/chat/completions" in names
            and any(n.startswith("chat ") for n in names)
        )

    spans = _wait(collector, trace_id, complete)
    gateway = _one(spans, "gateway", "POST /v1/chat/completions")
    assert gateway.kind == SERVER and gateway.parent_span_id == caller  # the caller's trace, continued
    assert r.headers["traceresponse"] == f"00-{trace_id}-{gateway.span_id}-01"  # where to look
    assert gateway.attributes["http.response.status_code"] == 200
    assert gateway.attributes["switchyard.task_id"] == task_id
    classify = _one(spans, "classifier", "process switchyard.task.submitted.v1")
    route = _one(spans, "router", "process switchyard.task.classified.v1")
    execute = _one(spans, "executor", "process switchyard.task.routed.v1")
    assert classify.kind == route.kind == execute.kind == CONSUMER
    # each consumer's span is the child of the span that published the event it handled
    assert classify.parent_span_id == gateway.span_id
    assert route.parent_span_id == classify.span_id
    assert execute.parent_span_id == route.span_id
    assert classify.attributes["switchyard.task_type"] and route.attributes["switchyard.route_model"]
    assert execute.attributes["switchyard.outcome"] == "completed"
    call = next(s for s in spans if s.name.startswith("chat "))
    assert call.kind == CLIENT and call.parent_span_id == execute.span_id
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["gen_ai.provider.name"] == "local"
    assert call.attributes["switchyard.model"] == route.attributes["switchyard.route_model"]
    assert (
        call.attributes["gen_ai.usage.input_tokens"] > 0 and call.attributes["gen_ai.usage.output_tokens"] > 0
    )
    assert call.attributes["switchyard.call.outcome"] == "ok"
    # billing and audit handled events of this task, in this trace, below the executor's span
    below = {s.span_id for s in spans if s.parent_span_id in (execute.span_id, call.span_id)}
    billing = [s for s in spans if s.service == "switchyard-billing"]
    assert billing and all(s.kind == CONSUMER for s in billing)
    assert any(s.parent_span_id == execute.span_id or s.parent_span_id in below for s in billing)
    # ids, models, counts: never the prompt, never the answer
    for span in spans:
        for value in span.attributes.values():
            assert PROMPT not in str(value) and (not answer or answer not in str(value)), span
    # the ledger's entries of the task (what a SIEM gets) name the trace and the span that published each
    # event, so an auditor goes from an entry to its trace
    entries = _ledger(stack, task_id, 6)
    assert {e["trace_id"] for e in entries.values()} == {trace_id}
    assert entries["task.submit"]["span_id"] == gateway.span_id
    assert entries["task.classify"]["span_id"] == classify.span_id
    assert entries["task.route"]["span_id"] == route.span_id
    assert entries["task.complete"]["span_id"] == execute.span_id


def _ledger(stack: RunningStack, task_id: str, count: int) -> dict[str, dict[str, object]]:
    """The details of the task's ledger entries by action, once `count` of them are written."""
    deadline = time.monotonic() + 30
    while True:
        con = sqlite3.connect(stack.var_dir / "switchyard.db")
        try:
            rows = con.execute(
                "SELECT action, details FROM ledger_entries WHERE resource = ?", (f"task/{task_id}",)
            ).fetchall()
        finally:
            con.close()
        if len(rows) >= count or time.monotonic() > deadline:
            return {action: orjson.loads(details) for action, details in rows}
        time.sleep(0.2)


def test_without_a_traceparent_the_gateway_starts_the_trace(
    traced: tuple[RunningStack, FakeCollector],
) -> None:
    stack, collector = traced
    before = {s.trace_id for s in collector.spans}
    for probe in ("/readyz", "/healthz", "/metrics"):  # probes and scrapes make no spans
        assert httpx.get(f"{stack.base_url}{probe}", timeout=10).status_code == 200
    lost = httpx.get(f"{stack.base_url}/wp-login.php", timeout=10)  # no route: named by its method alone
    assert lost.status_code == 404
    r = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {stack.api_key}"},
        json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi."}]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        roots = [
            s
            for s in collector.spans
            if s.trace_id not in before and s.name == "POST /v1/chat/completions" and s.kind == SERVER
        ]
        if roots:
            break
        time.sleep(0.2)
    assert len(roots) == 1 and roots[0].parent_span_id == ""
    spans = _wait(collector, roots[0].trace_id, lambda s: any(x.service == "switchyard-executor" for x in s))
    assert {"switchyard-classifier", "switchyard-router", "switchyard-executor"} <= {s.service for s in spans}
    assert not [s.name for s in collector.spans if s.name.startswith("GET /")]
    assert [s.attributes["http.response.status_code"] for s in collector.spans if s.name == "GET"] == [404]


def test_tracing_off_exports_nothing_and_passes_the_callers_context_on(tmp_path: Path) -> None:
    """Without an endpoint no process exports a span, and the events of a request still carry the
    caller's `traceparent` (another system reading the bus can join its trace)."""
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in os.environ
    stack = start_stack(tmp_path / "var", tmp_path / "up.log")
    try:
        parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        r = httpx.post(
            f"{stack.base_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {stack.api_key}", "traceparent": parent},
            json={"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi."}]},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert "traceresponse" not in r.headers  # no span of its own
        task_id = r.headers["x-switchyard-task-id"]
        carried = asyncio.run(_traceparents(stack.nats_url, task_id))
        assert carried == dict.fromkeys(carried, parent) and len(carried) == 4, carried
        # and the ledger names the caller's trace and span on each of the task's entries
        entries = _ledger(stack, task_id, 6)
        assert {(e["trace_id"], e["span_id"]) for e in entries.values()} == {tuple(parent.split("-")[1:3])}
        assert "exporting traces" not in (tmp_path / "up.log").read_text()
    finally:
        stop_stack(stack)


async def _traceparents(nats_url: str, task_id: str) -> dict[str, str | None]:
    """The `traceparent` of the task's submitted, classified, routed and result events, from the stream."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        out: dict[str, str | None] = {}
        submitted = orjson.loads(
            (await js.get_last_msg(subjects.STREAM_EVENTS, subjects.TASK_SUBMITTED)).data
        )
        for subject in (
            subjects.TASK_SUBMITTED,
            subjects.TASK_CLASSIFIED,
            subjects.TASK_ROUTED,
            subjects.result_subject(submitted["data"]["tenant_id"], task_id),
        ):
            msg = await js.get_last_msg(subjects.STREAM_EVENTS, subject)
            event = orjson.loads(msg.data or b"{}")
            assert subject.startswith("switchyard.result") or event["subject"] == task_id
            out[subject] = event.get("traceparent")
        return out
    finally:
        await nc.close()
