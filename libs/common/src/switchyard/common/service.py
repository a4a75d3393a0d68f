"""Running a bus service: connect, declare streams, set up, start consumers, serve until a signal.

Each service's `main()` builds its settings and a `Service`, then calls `run_service`. Nothing happens at
import time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn

import orjson
import uvloop
from faststream.exceptions import SkipMessage
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from prometheus_client import Gauge, start_http_server
from pydantic import ValidationError
from pydantic_settings import SettingsError

from switchyard.common import background, bus, bus_guard, event_id_key, lag, metrics, subjects, tracing
from switchyard.common.bus_auth import BusRefused
from switchyard.common.config import CommonSettings, replica_name, settings_problem
from switchyard.common.errors import ConfigurationError
from switchyard.common.healthcheck import HEARTBEAT_METRIC
from switchyard.common.ids import EventIdKey
from switchyard.common.logs import configure_logging
from switchyard.common.watchdog import LoopWatchdog

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]

HEARTBEAT_S = 5.0
# Whose events are charged, so whose publisher checks a duplicate ack (publisher.py; the gateway's too):
# its NATS user may read the events stream's messages.
CHARGED_PUBLISHERS = frozenset({"executor"})
HEARTBEAT = Gauge(
    HEARTBEAT_METRIC,
    "When the event loop last ran its heartbeat (every 5 s): stale, the loop is wedged, though /metrics "
    "(served on a thread of its own) still answers; `healthcheck --liveness` checks it",
)


@dataclass
class Service:
    """A service's broker and lifecycle hooks. `setup` runs once connected and before consumers start;
    `drain` once consumers have stopped, while still connected; `teardown` after the broker stopped."""

    name: str
    broker: NatsBroker
    setup: list[Hook] = field(default_factory=list)
    teardown: list[Hook] = field(default_factory=list)
    drain: list[Hook] = field(default_factory=list)
    publisher: bus.EventPublisher | None = None
    id_key: EventIdKey | None = None  # what its publisher keys derived event ids with (event_id_key.py)
    lag_exporter: lag.LagExporter | None = None
    heartbeat: asyncio.Task[None] | None = None
    watchdog: LoopWatchdog | None = None
    stopping_since: float | None = None  # time.time() when its stop began: its ping says so from then

    def ping_reply(self, instance: str) -> dict[str, object]:
        reply: dict[str, object] = {
            "service": self.name,
            "instance": instance,
            "pid": os.getpid(),
            "host": socket.gethostname(),  # what a health check run in the same container matches
        }
        if self.stopping_since is not None:  # readiness fails (`healthcheck`); liveness does not ask
            reply["stopping"] = True
            reply["stopping_for_s"] = round(time.time() - self.stopping_since, 1)
        return reply

    def events(self) -> bus.EventPublisher:
        if self.publisher is None:
            raise RuntimeError(f"{self.name}: the publisher exists only once the broker is connected")
        return self.publisher


def create_service(name: str, settings: CommonSettings) -> Service:
    broker = bus.make_broker(settings.nats_url, name=name, credentials=settings.nats_credentials())
    id_key, keyed_by = event_id_key.load(settings)  # none where one is required: it cannot start
    log.info("%s keys derived event ids with the secret of %s", name, keyed_by)
    service = Service(name=name, broker=broker, id_key=id_key)
    instance = replica_name(name, settings.instance)
    metrics.expect_published(name)

    @broker.subscriber(subjects.ping_subject(name), include_in_schema=False)
    async def ping(msg: NatsMessage) -> bytes:
        if bus_guard.refused(msg.raw_message, subscription=subjects.ping_subject(name)):
            raise SkipMessage
        return orjson.dumps(service.ping_reply(instance))

    return service


async def start(service: Service, settings: CommonSettings) -> None:
    if settings.loop_watchdog_s:
        service.watchdog = LoopWatchdog(settings.loop_watchdog_s, name=service.name)
        service.watchdog.start()
    await service.broker.connect()
    js = bus.jetstream(service.broker)
    await bus.ensure_streams(js, replicas=settings.stream_replicas)
    service.publisher = bus.EventPublisher(
        js,
        source=f"switchyard/{service.name}",
        legacy_subjects=settings.legacy_subjects,
        checks_duplicates=service.name in CHARGED_PUBLISHERS,
        id_key=service.id_key,
    )
    for hook in service.setup:
        await hook()
    await service.broker.start()
    await bus.start_consumers(service.broker)
    if settings.metrics_port:
        HEARTBEAT.set_to_current_time()
        service.heartbeat = asyncio.create_task(_beat())
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
        service.lag_exporter = lag.LagExporter(js, lag.consumers_of(service.name))
        service.lag_exporter.start()


async def stop(service: Service, *, grace_s: float) -> None:
    """Stops asking for messages, lets running handlers finish for up to `grace_s` (then cuts them: their
    messages go back to the stream), drains, disconnects. From its first moment the replica's ping says
    it is stopping, so its readiness check fails while it finishes its work."""
    if service.stopping_since is None:
        service.stopping_since = time.time()
    if service.lag_exporter is not None:
        await service.lag_exporter.stop()
    await bus.stop_consumers(service.broker, grace_s=grace_s)
    for hook in reversed(service.drain):
        await hook()
    await service.broker.stop()
    for hook in reversed(service.teardown):
        await hook()
    if service.heartbeat is not None:  # beats on through the drain: the process is alive until here
        service.heartbeat.cancel()
    if service.watchdog is not None:
        service.watchdog.stop()


def exit_on_bad_settings(name: str, exc: ValidationError | SettingsError) -> NoReturn:
    """A setting with a bad value (`SWITCHYARD_HTTP_PORT=abc`): one line naming it, exit 2."""
    problem = settings_problem(exc)
    if problem is None:  # not the environment's: a bug, with its traceback
        raise exc
    print(f"switchyard-{name}: cannot start: {problem}", file=sys.stderr)
    sys.exit(2)


async def _beat() -> None:
    while True:
        HEARTBEAT.set_to_current_time()
        await asyncio.sleep(HEARTBEAT_S)


async def serve(service: Service, settings: CommonSettings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    log.info("%s connecting to NATS at %s", service.name, settings.nats_url)
    if not await _started_unless_stopped(service, settings, stopping):
        return
    log.info("%s ready (nats %s)", service.name, settings.nats_url)
    await stopping.wait()
    log.info("%s stopping", service.name)
    await stop(service, grace_s=settings.stop_grace_s)


async def _started_unless_stopped(
    service: Service, settings: CommonSettings, stopping: asyncio.Event
) -> bool:
    """`start`, unless a stop signal comes first: a service waits for NATS at start as long as it takes
    (it retries), and a SIGTERM meanwhile went unheard until the orchestrator's kill (docker compose's
    stop_grace_period, the pod's grace period: over ten minutes for the gateway and the executor)."""
    starting = asyncio.create_task(start(service, settings))
    signalled = asyncio.create_task(stopping.wait())
    await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    if starting.done():
        starting.result()  # its error, if it failed
        return True
    await background.cancel(starting)  # again each second: nats-py's wait_for may drop one (Python 3.11)
    where = "not connected yet" if service.publisher is None else "connected, still setting up"
    log.warning("%s stopped before it was ready (NATS at %s: %s)", service.name, settings.nats_url, where)
    if service.watchdog is not None:
        service.watchdog.stop()
    await service.broker.stop()
    return False


def run_service(build: Callable[[], tuple[Service, CommonSettings]], *, name: str) -> None:
    """Entry point helper: `build` creates settings and the service inside the event loop's process. A
    configuration the service cannot start with (a missing or corrupt artifact, an invalid setting) is one
    clear line and exit code 2, not a traceback."""
    try:
        service, settings = build()
    except ConfigurationError as exc:
        print(f"switchyard-{name}: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except (ValidationError, SettingsError) as exc:
        exit_on_bad_settings(name, exc)
    configure_logging(service=service.name, level=settings.log_level, json=settings.log_json)
    if tracing.configure(service.name):
        log.info("exporting traces to %s", tracing.endpoint())
    try:
        uvloop.run(serve(service, settings))
    except BusRefused as exc:  # the bus refused its credentials: no retry will change that
        print(f"switchyard-{name}: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(2)
    finally:
        tracing.shutdown()
