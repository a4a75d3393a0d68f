"""A bus service as the platform's are made, in the test's own process: `bus.subscribe` on a consumer,
invalid events dead-lettered (and, given `on_invalid`, their submitters answered)."""

from __future__ import annotations

from typing import Any

from switchyard.common import bus, subjects
from switchyard.common.bus_auth import NatsCredentials


async def start_probe(
    url: str,
    consumer: subjects.Consumer,
    service: str,
    handler: Any,
    *,
    expected: list[type[Any]] | None,
    name: str | None = None,
    credentials: NatsCredentials | None = None,
    **options: Any,
) -> tuple[Any, bus.EventPublisher]:
    """`handler` subscribed as `service`'s consumer on a connected, started broker, and the publisher it
    dead-letters through (`options`: the rest of `bus.subscribe`'s); the caller stops both
    (`bus.stop_consumers`, `broker.stop`); `credentials`: the NATS user it connects as."""
    broker = bus.make_broker(url, name=name or f"{consumer.durable}-test", credentials=credentials)
    publisher: list[bus.EventPublisher] = []
    bus.subscribe(
        broker,
        consumer=consumer,
        service=service,
        publisher=lambda: publisher[0],
        expected=expected,
        handler=handler,
        **options,
    )
    await broker.connect()
    js = bus.jetstream(broker)
    await bus.ensure_streams(js)
    publisher.append(bus.EventPublisher(js, source="test"))
    await broker.start()
    await bus.start_consumers(broker)
    return broker, publisher[0]
