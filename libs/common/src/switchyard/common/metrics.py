"""Bus-level Prometheus series every service gets from `switchyard.common`, with no code of its own.

- Events as they are published: counted once per event id (a publish JetStream reports as a duplicate is
  a redelivery's re-publish and is not counted again), with the cost and token series derived from the
  usage events billing publishes (`switchyard.billing.usage`).
- Dead letters, by consumer and code (`consumer`, not `service`: a scrape gives every series its target's
  `service`, and would rename a label of that name `exported_service`).
- Consumer lag of the service's durable consumers (see `switchyard.common.lag`).

Each series appears on the `/metrics` of the process that publishes or consumes: billing exports cost,
every bus service exports its own consumer's lag.

A counter's labelled child is born at its first increment, and `rate()`/`increase()` over a series that
appears at 1 miss that event. The label combinations known at start are made at 0 then (`zero`):
`expect_published` for the events a service publishes, `expect_dead_letters` for each consumer it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Gauge

from switchyard.common import contract
from switchyard.common.events.base import EventPayload
from switchyard.common.events.billing import UsageRecorded

EVENTS_PUBLISHED = Counter("switchyard_events_published_total", "Events published to the bus", ["type"])
DEAD_LETTERS = Counter(
    "switchyard_dead_letters_total", "Messages moved to the dead-letter stream", ["consumer", "code"]
)
# What any consumer may dead-letter: an invalid event (`bus.subscribe`: not a CloudEvent of its types, too
# large, a stored read answer) or a handler's failure after its last redelivery.
DEAD_LETTER_CODES = (
    "invalid_event",
    "event_too_large",
    "not_published",
    "handler_error",
    "transient_error",
    "tenant_mismatch",  # an event on another tenant's scoped subject (envelope.placed): any reader's
)
COST_USD = Counter(
    "switchyard_billing_cost_usd_total", "Priced cost of delivered work, USD", ["tier", "provider", "model"]
)
TOKENS = Counter("switchyard_billing_tokens_total", "Billed tokens", ["tier", "provider", "model", "kind"])

CONSUMER_PENDING = Gauge(
    "switchyard_consumer_pending_messages",
    "Messages in the stream not yet delivered to the durable consumer",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "switchyard_consumer_ack_pending_messages",
    "Messages delivered to the durable consumer and not yet acknowledged",
    ["stream", "consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "switchyard_consumer_redelivered_messages",
    "Messages delivered more than once and not yet acknowledged",
    ["stream", "consumer"],
)
CONSUMER_OLDEST_UNACKED_AGE = Gauge(
    "switchyard_consumer_oldest_unacked_age_seconds",
    "Age of the oldest message the durable consumer has not acknowledged (0 when caught up)",
    ["stream", "consumer"],
)
CONSUMER_OLDEST_WAITING_AGE = Gauge(
    "switchyard_consumer_oldest_waiting_age_seconds",
    "Age of the oldest message not delivered to the durable consumer yet: the queue's lag, without the "
    "work in progress (a streamed answer may run an hour, unacked all along) (0 when none waits)",
    ["stream", "consumer"],
)


def observe_published(payload: EventPayload) -> None:
    """Called once per newly stored event (never for a duplicate publish)."""
    EVENTS_PUBLISHED.labels(payload.EVENT_TYPE).inc()
    if isinstance(payload, UsageRecorded):
        labels = (payload.tier, payload.provider, payload.model)
        COST_USD.labels(*labels).inc(payload.cost_usd)
        TOKENS.labels(*labels, "prompt").inc(payload.prompt_tokens)
        TOKENS.labels(*labels, "completion").inc(payload.completion_tokens)


def observe_dead_letter(*, consumer: str, code: str) -> None:
    DEAD_LETTERS.labels(consumer, code).inc()


def zero(counter: Counter, combinations: Iterable[Sequence[str]]) -> None:
    """Makes each labelled child now, at 0, so that its first event is an increase Prometheus sees."""
    for labels in combinations:
        counter.labels(*labels)


def expect_dead_letters(consumer: str, codes: Iterable[str] = ()) -> None:
    """The consumer's dead letters at 0: the codes any consumer may give, and `codes` its handler's own."""
    zero(DEAD_LETTERS, [(consumer, code) for code in dict.fromkeys([*DEAD_LETTER_CODES, *codes])])


def expect_published(service: str) -> None:
    """The events the bus contract says `service` publishes, at 0."""
    types = {
        kind
        for channel in contract.CHANNELS
        if service in channel.producers and channel.cloudevent
        for message in channel.messages
        if (kind := getattr(message, "EVENT_TYPE", None)) is not None
    }
    zero(EVENTS_PUBLISHED, [(kind,) for kind in sorted(types)])


def expect_usage(models: Iterable[tuple[str, str, str]]) -> None:
    """Billing's cost and token series at 0 for each (tier, provider, model) its policy prices."""
    for labels in models:
        zero(COST_USD, [labels])
        zero(TOKENS, [(*labels, "prompt"), (*labels, "completion")])
