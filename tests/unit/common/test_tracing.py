"""Trace context: W3C `traceparent` read and written exactly; spans parented on an event's context or the
current span; with tracing off, nothing recorded but a context that came in goes on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from switchyard.common import tracing

pytestmark = pytest.mark.unit
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", exporter=exporter)
    yield exporter
    tracing.shutdown()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # an all-zero trace id is invalid
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # so is an all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is forbidden
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has four fields
        "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",  # not hex
    ],
)
def test_a_malformed_traceparent_is_no_parent(header: str | None) -> None:
    assert tracing.parse(header) is None


def test_a_traceparent_reads_and_writes_back_the_same() -> None:
    context = tracing.parse(PARENT)
    assert context is not None and context.is_remote and context.trace_flags.sampled
    assert tracing.format_traceparent(context) == PARENT
    later = tracing.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future")
    assert later is not None and not later.trace_flags.sampled  # a later version's extra fields pass


def test_off_records_nothing_and_passes_an_incoming_context_on() -> None:
    assert not tracing.enabled()
    with tracing.span("work") as span:
        assert span is None and tracing.current_traceparent() is None
    with tracing.span("work", traceparent=PARENT) as span:
        assert span is None and tracing.current_traceparent() == PARENT
    assert tracing.current_traceparent() is None
    assert tracing.start("call") is None
    tracing.annotate(task_id="t1")  # nothing to annotate, no error


def test_spans_chain_from_an_events_context(exported: InMemorySpanExporter) -> None:
    with tracing.span("process a", kind=SpanKind.CONSUMER, traceparent=PARENT, attributes={"k": 1}) as span:
        assert span is not None
        tracing.annotate(task_id="t1", gen_ai__request__model="m", skipped=None)
        published = tracing.current_traceparent()  # what an event published here carries
        call = tracing.start("chat m")
        assert call is not None
        call.end()
    with tracing.span("process b", kind=SpanKind.CONSUMER, traceparent=published):
        pass
    with tracing.span("root"):
        pass
    assert tracing.flush()
    spans = {s.name: s for s in exported.get_finished_spans()}
    a, b, chat, root = spans["process a"], spans["process b"], spans["chat m"], spans["root"]
    assert a.context is not None and a.parent is not None
    assert a.context.trace_id == tracing.parse(PARENT).trace_id  # type: ignore[union-attr]
    assert a.parent.span_id == 0x00F067AA0BA902B7 and a.kind == SpanKind.CONSUMER
    assert dict(a.attributes or {}) == {"k": 1, "switchyard.task_id": "t1", "gen_ai.request.model": "m"}
    assert published == tracing.format_traceparent(a.context)
    assert chat.parent is not None and chat.parent.span_id == a.context.span_id
    assert b.parent is not None and b.parent.span_id == a.context.span_id
    assert root.parent is None and root.context is not None and root.context.trace_id != a.context.trace_id
    assert a.resource.attributes["service.name"] == "switchyard-test"


def test_no_endpoint_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.endpoint() is None and not tracing.configure("x")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.endpoint() == "http://127.0.0.1:4318"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces")
    assert tracing.endpoint() == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.endpoint() is None


def test_log_lines_name_the_trace_they_were_logged_in(exported: InMemorySpanExporter) -> None:
    from switchyard.common.logs import _trace_processor

    assert _trace_processor(None, "info", {"event": "x"}) == {"event": "x"}
    with tracing.span("work", traceparent=PARENT) as span:
        assert span is not None
        line = _trace_processor(None, "info", {"event": "x"})
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"


def test_a_collector_that_hangs_does_not_hold_up_a_stop() -> None:
    import threading
    import time

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    release = threading.Event()

    class Hanging(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            release.wait(10)  # a collector that never answers (the exporter's own timeout is 10 s)
            return SpanExportResult.FAILURE

    assert tracing.configure("test", exporter=Hanging())
    with tracing.span("work"):
        pass
    began = time.monotonic()
    tracing.shutdown(timeout_s=0.3)
    took = time.monotonic() - began
    release.set()
    assert took < 1.5 and not tracing.enabled()


def test_a_histogram_observed_in_a_span_links_its_bucket_to_the_trace(exported: InMemorySpanExporter) -> None:
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.openmetrics.exposition import generate_latest

    registry = CollectorRegistry()
    seconds = Histogram("work_seconds", "Work", registry=registry, buckets=(0.1, 1.0))
    with tracing.span("work", traceparent=PARENT):
        seconds.observe(0.05, tracing.exemplar())
    with tracing.span("unsampled", traceparent=PARENT[:-2] + "00"):  # the caller did not sample it
        assert tracing.exemplar() is None
    text = generate_latest(registry).decode()
    line = next(x for x in text.splitlines() if x.startswith('work_seconds_bucket{le="0.1"}'))
    assert 'trace_id="4bf92f3577b34da6a3ce929d0e0e4736"' in line


def test_no_exemplar_with_tracing_off() -> None:
    with tracing.span("work", traceparent=PARENT):
        assert tracing.exemplar() is None
