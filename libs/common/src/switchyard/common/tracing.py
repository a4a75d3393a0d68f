"""Distributed traces: one trace per task, from the gateway's HTTP request through every service that
handles its events, exported with OpenTelemetry over OTLP.

Off unless an OTLP endpoint is set, by OpenTelemetry's own variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` for traces alone; `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`,
`OTEL_SERVICE_NAME` and the rest mean what they mean to any OpenTelemetry SDK); each process then exports
its spans in batches, from a thread, over OTLP/HTTP (protobuf).

The trace context travels on the bus as each event's `traceparent` (W3C Trace Context, the CloudEvents
distributed-tracing extension): a consumer's span is a child of the span that published the event, and
what it publishes carries its own span (`current_traceparent`, which the event publisher reads). With
tracing off nothing is recorded, but a `traceparent` that came in (an HTTP header, another system's
event) still goes on with the events it caused.

Spans carry ids, models, token counts, outcomes and timings: never prompt or answer text, never keys.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

from switchyard.common.config import replica_name

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

TRACER = "switchyard"
_provider: Any = None  # the SDK's TracerProvider, once `configure` set one
_tracer: trace.Tracer | None = None


def endpoint() -> str | None:
    """Where spans go, by OpenTelemetry's variables; None: tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    found = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return found.strip() or None if found else None


def configure(service: str, *, exporter: SpanExporter | None = None) -> bool:
    """Exports this process's spans when an endpoint is set (see the module), or to `exporter` (tests);
    True when it does. The SDK is imported only then: a process with tracing off never loads it. The
    provider is this module's own, not OpenTelemetry's global one, so a test can configure it again."""
    global _provider, _tracer
    if _provider is not None:
        return True
    if exporter is None and endpoint() is None:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_*
        # A collector that is down: one error line per batch given up, not a warning per retry.
        logging.getLogger("opentelemetry.exporter.otlp.proto.http").setLevel(logging.ERROR)
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or f"switchyard-{service}",
            "service.namespace": "switchyard",
            "service.instance.id": replica_name(service, os.environ.get("SWITCHYARD_INSTANCE", "")),
        }
    )
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER (parent-based, all)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer(TRACER)
    return True


def flush(timeout_s: float = 5.0) -> bool:
    """Exports what is batched now (tests, and before a process exits)."""
    return True if _provider is None else bool(_provider.force_flush(int(timeout_s * 1000)))


SHUTDOWN_S = 2.0  # at a process's stop, how long what is still batched may take to go out


def shutdown(timeout_s: float = SHUTDOWN_S) -> None:
    """Sends what is still batched and stops exporting, waiting at most `timeout_s`: a collector that is
    down (the exporter retries for 10 s) must not hold up a service's stop. What is not sent by then is
    lost with the process."""
    global _provider, _tracer
    if _provider is None:
        return
    provider, _provider, _tracer = _provider, None, None
    closing = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    closing.start()
    closing.join(timeout_s)


def enabled() -> bool:
    return _provider is not None


def parse(traceparent: str | None) -> SpanContext | None:
    """A W3C `traceparent` (version 00) as a remote span context; None when absent or malformed."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_id, span_id, flags = parts[:4]
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2 or (version == "00" and len(parts) != 4):
        return None
    try:
        context = SpanContext(
            trace_id=int(trace_id, 16),
            span_id=int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(flags, 16) & 0x01),
        )
    except ValueError:
        return None
    return context if context.is_valid else None


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current() -> SpanContext | None:
    """The current span's context (a recorded span's, or a remote parent made current), or None."""
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def ids(context: SpanContext) -> dict[str, str]:
    """`trace_id` and `span_id` in hex, as log lines and exemplars name them."""
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def current_traceparent() -> str | None:
    """The current span's `traceparent` (what an event published now carries), or None outside one."""
    context = current()
    return None if context is None else format_traceparent(context)


def _parent(traceparent: str | None) -> Context | None:
    remote = parse(traceparent)
    return None if remote is None else trace.set_span_in_context(NonRecordingSpan(remote), Context())


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    traceparent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    record: bool = True,
) -> Iterator[Span | None]:
    """A span around a unit of work, made current: the child of `traceparent` when one is given (an
    event's, a request header's), else of the current span. With tracing off (or `record` false) and no
    `traceparent`, nothing at all (None); with one, the remote parent is made current, so that what is
    published inside carries it on."""
    parent = _parent(traceparent)
    if _tracer is None or not record:
        if parent is None:
            yield None
            return
        with trace.use_span(trace.get_current_span(parent), end_on_exit=False):
            yield None
        return
    with _tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {})
    ) as current:
        yield current


def start(
    name: str, *, kind: SpanKind = SpanKind.CLIENT, attributes: Mapping[str, Any] | None = None
) -> Span | None:
    """A span begun now as a child of the current one but not made current (it may end after a stream's
    last part, in another task); the caller ends it. None when tracing is off."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, kind=kind, attributes=dict(attributes or {}))


def exemplar() -> dict[str, str] | None:
    """The current span as a Prometheus exemplar (`trace_id`, `span_id`): a histogram observed in a span
    then links its bucket to a trace that is exported (Grafana jumps from a latency spike to it). None
    when tracing is off or the span is not sampled."""
    if _provider is None:
        return None
    context = current()
    return None if context is None or not context.trace_flags.sampled else ids(context)


def annotate(**attributes: Any) -> None:
    """Sets attributes on the current span (`switchyard.<name>` unless the name has a dot, with `_` in
    place of dots: `gen_ai__request__model`); nothing when tracing is off."""
    if _provider is None:
        return
    current = trace.get_current_span()
    if not current.is_recording():
        return
    for key, value in attributes.items():
        if value is None:
            continue
        name = key.replace("__", ".") if "__" in key else f"switchyard.{key}"
        current.set_attribute(name, value)
