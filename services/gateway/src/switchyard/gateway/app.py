"""The gateway: HTTP in (OpenAI-compatible), tasks onto the bus, results back out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import sys
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from faststream.nats import NatsBroker
from pydantic import ValidationError
from pydantic_settings import SettingsError
from starlette.middleware.cors import CORSMiddleware

from switchyard.common import background, bus, event_id_key, subjects, tenants, tracing
from switchyard.common import metrics as common_metrics
from switchyard.common.budgets import budgets_bucket, limits_bucket
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.errors import ConfigurationError
from switchyard.common.leases import IntCounters, Leases, SlotTable
from switchyard.common.logs import configure_logging
from switchyard.common.policy_source import PolicySource
from switchyard.common.service import exit_on_bad_settings
from switchyard.common.watchdog import LoopWatchdog
from switchyard.gateway import errors, gone, metrics, openapi, responses_ws
from switchyard.gateway.access import lockout, oidc
from switchyard.gateway.access import views as access
from switchyard.gateway.access.changes import AuthChanges, changes_bucket
from switchyard.gateway.access.fence import ErasedFence
from switchyard.gateway.access.late_events import LateEvents
from switchyard.gateway.access.registry import Registry
from switchyard.gateway.admission import Admission
from switchyard.gateway.batches import lines as batch_lines
from switchyard.gateway.batches import views as batch_views
from switchyard.gateway.batches.setup import start_batches
from switchyard.gateway.budgets.counters import SpendCounters
from switchyard.gateway.budgets.service import Budgets
from switchyard.gateway.cache.setup import create_cache
from switchyard.gateway.catalog import Catalog
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.conversations import views as conversation_views
from switchyard.gateway.embeddings import EmbeddingResults
from switchyard.gateway.files import views as files_views
from switchyard.gateway.files.store import files_bucket
from switchyard.gateway.guardrails import service as guardrails
from switchyard.gateway.guardrails.chain import load_file as load_guardrail_file
from switchyard.gateway.guardrails.tenants import warn_unknown_tenants
from switchyard.gateway.inflight import SPEND, WINDOWS, InFlight, Orphans, gateways_bucket, replica_name
from switchyard.gateway.intake import Intake, map_large_blocks
from switchyard.gateway.limits import views as limits
from switchyard.gateway.limits.control import Control, control_bucket
from switchyard.gateway.limits.counters import counter_bucket
from switchyard.gateway.limits.service import RateLimiter
from switchyard.gateway.message_batches import views as message_batch_views
from switchyard.gateway.middleware import RequestContext
from switchyard.gateway.refused import RefusedAtStart
from switchyard.gateway.sockets import RefusedHandshake
from switchyard.gateway.state import Gateway
from switchyard.gateway.stopping import Server, Stop
from switchyard.gateway.stored_responses import views as stored_views
from switchyard.gateway.stored_responses.store import HEADROOM, left_bucket, responses_bucket
from switchyard.gateway.taskapi import body_key as body_keys
from switchyard.gateway.taskapi import views as taskapi
from switchyard.gateway.taskapi.service import TaskRuns
from switchyard.gateway.taskapi.store import TaskStore, tasks_bucket
from switchyard.gateway.tasks import TaskClient
from switchyard.gateway.tenants import KeyVerifier
from switchyard.gateway.views import chat, embeddings, gemini, health, messages, models
from switchyard.gateway.views import feedback as feedback_views
from switchyard.gateway.views import ledger as ledger_views
from switchyard.gateway.views import usage as usage_views
from switchyard.gateway.views import webhooks as webhook_views

log = logging.getLogger(__name__)

LIMITS_KEEP_S = 2 * 24 * 3600.0  # longer than the longest window (a day)
SPEND_KEEP_S = 40 * 24 * 3600.0  # longer than the longest budget period (a month)


# What a browser client may read of a response (CORS hides other headers from scripts).
EXPOSED_HEADERS = [
    "x-request-id",
    "x-switchyard-task-id",
    "x-switchyard-model",
    "x-switchyard-stream-start",
    "x-switchyard-tier",
    "x-switchyard-overhead-ms",
    "x-switchyard-cache",
    "x-switchyard-cache-kind",
    "x-switchyard-cache-similarity",
    "x-switchyard-logprobs",
    "server-timing",
    "traceresponse",
    "retry-after",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]


def create_app(settings: GatewaySettings, stop: Stop | None = None) -> FastAPI:
    """The gateway's app; `stop` hears when the server's graceful stop begins (`main` passes its own)."""
    # re-read when its file changes, as the router's: models, aliases and prices without a restart
    policy = PolicySource(
        settings.policy_path, check_s=settings.policy_check_s, settle_s=settings.policy_settle_s
    )
    # read before the server starts: a mistake in it stops the gateway (ConfigurationError), in one line
    guardrail_file = load_guardrail_file(settings.guardrails_path) if settings.guardrails_enabled else None
    id_key, ids_keyed_by = event_id_key.load(settings)  # none where one is required: it cannot start
    body_key, keyed_by = body_keys.load(settings)  # the same on every replica: where it comes from, logged
    log.info("Idempotency-Key body digests are sealed with the secret of %s", keyed_by)
    log.info("derived event ids are keyed with the secret of %s", ids_keyed_by)
    stop = stop or Stop(settings.stop_grace_s)
    broker = bus.make_broker(settings.nats_url, name="gateway", credentials=settings.nats_credentials())
    common_metrics.expect_published("gateway")
    metrics.at_start(batch_endpoints=(*batch_lines.ENDPOINTS, batch_lines.MESSAGES))

    async def connected(app: FastAPI) -> None:
        js = bus.jetstream(broker)
        await bus.ensure_streams(js)
        engine = create_engine(settings.db_url(), **settings.db_options())
        sessions = sessionmaker(engine)
        nc = bus.connection(broker)
        events = bus.EventPublisher(
            js,
            source="switchyard/gateway",
            legacy_subjects=settings.legacy_subjects,
            checks_duplicates=True,
            id_key=id_key,
        )
        registry = Registry(await tenants.registry_bucket(js), sessions, every_s=settings.tenant_sync_s)
        await registry.start()  # before the first request: a deployment's organisations, registered
        verifier = KeyVerifier(sessions, ttl_s=settings.auth_cache_ttl_s, loaded=registry.authenticated)
        sso = oidc.from_settings(settings, sessions, events)
        await warn_unknown_tenants(sessions, guardrail_file, cache_tenants=settings.cache_tenants)

        def invalidate(kind: str, ident: str) -> None:
            verifier.invalidate(kind, ident)
            if sso is not None:
                sso.invalidate(kind, ident)

        changes = AuthChanges(await changes_bucket(js), invalidate)
        await changes.start()
        control = Control(await control_bucket(js))
        await control.start()
        inflight = InFlight(
            await gateways_bucket(js),
            replica=replica_name(settings.instance or "gateway"),
            ttl_s=settings.replica_ttl_s,
            beat_s=min(1.0, settings.replica_ttl_s / 4),
            on_fenced=stop.at_once,
        )
        # the token windows and spend write the in-flight list before they give back (slots need not:
        # their table expires by itself)
        limit_bucket = await counter_bucket(js, subjects.KV_GATEWAY_LIMITS, ttl_s=LIMITS_KEEP_S)
        limiter = RateLimiter(
            Leases(IntCounters(limit_bucket), before_return=inflight.before_return),
            Leases(SlotTable(limit_bucket, ttl_s=settings.concurrency_slot_ttl_s)),
            settings.limits(),
            control,
        )
        spend = Leases(
            SpendCounters(
                IntCounters(await counter_bucket(js, subjects.KV_SPEND, ttl_s=SPEND_KEEP_S)),
                IntCounters(await counter_bucket(js, subjects.KV_SPEND_TOTAL, ttl_s=None)),
            ),
            divisor=64,
            before_return=inflight.before_return,
        )
        budgets = Budgets(
            spend,
            await budgets_bucket(js),
            plan_daily_usd=settings.plan_daily_usd(),
            limits=await limits_bucket(js),
        )
        spend.on_returned(budgets.returned)
        await budgets.start()
        await inflight.start()
        orphans = Orphans(
            inflight, js, events, stores={WINDOWS: limiter.windows.store, SPEND: spend.store}, policy=policy
        )
        await orphans.start()
        for leases in (limiter.windows, limiter.slots, spend):
            await leases.start()
        tasks = TaskClient(nc, events, legacy_subjects=settings.legacy_subjects)
        if settings.max_body_bytes > tasks.max_task_bytes():
            log.warning(
                "SWITCHYARD_MAX_BODY_BYTES (%d) is more than the bus carries per task (%d: its max_payload "
                "less what the pipeline adds): bodies between the two get 413 bus_max_payload_exceeded",
                settings.max_body_bytes,
                tasks.max_task_bytes(),
            )
        runs = TaskRuns(
            TaskStore(await tasks_bucket(js), js), tasks, events, timeout_s=settings.async_task_timeout_s
        )
        await runs.start(nc)
        cache = await create_cache(settings, js, events)
        app.state.gateway = Gateway(
            settings=settings,
            engine=engine,
            sessions=sessions,
            verifier=verifier,
            registry=registry,
            changes=changes,
            events=events,
            nc=nc,
            tasks=tasks,
            runs=runs,
            inflight=inflight,
            orphans=orphans,
            stop=stop,
            embedding_results=EmbeddingResults(js),
            files=await files_bucket(
                js, max_bytes=settings.files_bucket_bytes, replicas=settings.stream_replicas
            ),
            catalog=Catalog(policy, js, refresh_s=settings.providers_refresh_s),
            limiter=limiter,
            budgets=budgets,
            admission=Admission(
                policy=policy,
                limiter=limiter if settings.limits_enabled else None,
                budgets=budgets if settings.budgets_enabled else None,
                default_max_tokens=settings.budget_default_max_tokens,
                inflight=inflight,
            ),
            intake=Intake(settings.max_body_bytes_reading, max_body_bytes=settings.max_body_bytes),
            body_key=body_key,
            guardrails=guardrails.from_settings(settings, events, guardrail_file),
            sso=sso,
            lockout=await lockout.from_settings(settings, js, events, keep_s=LIMITS_KEEP_S),
            cache=cache,
        )
        app.state.gateway.batches = await start_batches(app.state.gateway, js, replica=inflight.replica)
        if settings.responses_store:
            app.state.gateway.responses = await responses_bucket(
                js,
                keep_s=settings.responses_keep_s,
                max_bytes=settings.responses_bucket_bytes,
                replicas=settings.stream_replicas,
                max_value_bytes=nc.max_payload - HEADROOM,
                org_bytes=settings.responses_org_bytes or settings.responses_bucket_bytes // 4,
            )
        else:
            app.state.gateway.responses_left = await left_bucket(
                js, max_value_bytes=nc.max_payload - HEADROOM
            )
        registry_bucket = await tenants.registry_bucket(js)
        _fence_late_writers(app.state.gateway, ErasedFence(registry_bucket))
        late = LateEvents(js, registry_bucket, window_s=settings.async_task_timeout_s)
        late.start()
        app.state.gateway.late_events = late
        app.state.gateway.files.start()
        log.info("gateway ready on http://%s:%d", settings.http_host, settings.http_port)

    async def closing(app: FastAPI) -> None:
        gateway = app.state.gateway
        if gateway.batches is not None:  # first: no line is submitted once the replica stops
            await gateway.batches.runner.stop()
        gateway.admission.stopping()  # a task whose outcome does not come in time is handed over
        await gateway.tasks.drain()  # cancellations of abandoned streams still being published
        await gateway.embedding_results.drain()  # stored vectors already read, still being deleted
        await gateway.runs.stop()  # the task API's tasks run on: handed over too
        await gateway.files.stop()  # its sweep of expired files
        await gateway.admission.drain()  # settlements still running, then every unused lease unit back
        for leases in (gateway.limiter.windows, gateway.limiter.slots, gateway.budgets.spend):
            await leases.close()
        await gateway.orphans.stop()
        await gateway.inflight.stop()  # after the hand-backs: the entry goes (or lists what is unsettled)
        await gateway.budgets.drain()
        await app.state.gateway.changes.stop()
        await app.state.gateway.registry.stop()
        if app.state.gateway.late_events is not None:
            await app.state.gateway.late_events.stop()
        await app.state.gateway.limiter.control.stop()
        if app.state.gateway.lockout is not None:
            await app.state.gateway.lockout.stop()
        await app.state.gateway.engine.dispose()
        if app.state.gateway.cache is not None:
            await app.state.gateway.cache.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Connected to NATS before the first request is served; closed after the last one."""
        watchdog = (
            LoopWatchdog(settings.loop_watchdog_s, name="gateway") if settings.loop_watchdog_s else None
        )
        if watchdog is not None:
            watchdog.start()
        log.info("gateway connecting to NATS at %s", settings.nats_url)
        await _connected_unless_stopped(broker, stop, settings.nats_url)
        try:
            await connected(app)
            yield
            await closing(app)
        finally:
            await broker.stop()
            if watchdog is not None:
                watchdog.stop()

    app = FastAPI(
        title="Switchyard",
        version="0.1.0",
        description="OpenAI-compatible gateway: routes each task to the right model and records every step.",
        lifespan=lifespan,
        # A path with a trailing slash is no route (404 in the house format, as OpenAI answers a path it does
        # not serve), not Starlette's 307 to an absolute URL built from the request: empty for a client that
        # does not follow it (httpx, curl), and http:// behind a proxy that ends TLS for one that does.
        redirect_slashes=False,
    )
    for view in (chat, embeddings, messages, taskapi, models, gemini, health, access, limits):
        app.include_router(view.router)
    app.include_router(ledger_views.router)
    app.include_router(feedback_views.router)
    app.include_router(usage_views.router)
    app.include_router(webhook_views.router)
    app.include_router(batch_views.router)
    app.include_router(message_batch_views.router)
    app.include_router(files_views.router)
    app.include_router(stored_views.router)
    app.include_router(conversation_views.router)
    app.include_router(responses_ws.router)
    errors.install(app)
    openapi.install(app)
    app.add_middleware(RequestContext, stop=stop)
    if settings.cors_origins:  # outermost: a preflight is answered before auth, with the request id
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["*"],  # the SDKs send their own (x-stainless-*, anthropic-version, ...)
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,  # keys travel in headers; cookies are never read
            max_age=600,
        )
    return app


async def _connected_unless_stopped(broker: NatsBroker, stop: Stop, nats_url: str) -> None:
    """The broker connected, unless a stop signal comes first: the gateway waits for NATS at start as long
    as it takes, and a SIGTERM meanwhile went unheard until the orchestrator's kill (the pod's 625 s).
    uvicorn then ends the startup without serving (`Stopped`, said in one line by `CutByStop`)."""
    connecting = asyncio.ensure_future(broker.connect())
    while not connecting.done():
        await asyncio.wait({connecting}, timeout=0.2)
        if stop.stopping and not connecting.done():
            await background.cancel(connecting)  # again each second: a wait_for may drop one (Python 3.11)
            raise Stopped(f"stopped before it was ready (NATS at {nats_url}: not connected yet)")
    connecting.result()


class Stopped(Exception):
    """The gateway was told to stop before it was ready."""


STOPPED = f"{Stopped.__module__}.{Stopped.__qualname__}: "  # how a traceback names it


class CutByStop(logging.Filter):
    """uvicorn logs each request its graceful stop cancels after the response began as "Exception in ASGI
    application" with the cancellation's traceback, some sixty lines a request. The gateway ends its
    requests a little before (`stopping`), so this is a stream whose last event was still being written;
    its task was cancelled on the bus and is settled at its outcome or handed over (`serving`,
    `inflight`): one line says so. A stop before the gateway was ready (`Stopped`) is one line too, not
    the startup's traceback and "Application startup failed"."""

    def __init__(self, stop: Stop) -> None:
        super().__init__()
        self._stop = stop

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            self._one_line(record, gone.CUT)
        if self._stop.stopping and record.levelno >= logging.ERROR:
            text = record.getMessage()  # uvicorn logs the lifespan's failure as the traceback's text
            if text == "Application startup failed. Exiting.":
                return False
            if STOPPED in text:
                self._one_line(record, "gateway " + text.rsplit(STOPPED, 1)[1].strip())
        return True

    @staticmethod
    def _one_line(record: logging.LogRecord, said: str) -> None:
        record.msg, record.args, record.exc_info = said, (), None
        record.levelno, record.levelname = logging.WARNING, "WARNING"


def main() -> None:
    try:
        settings = GatewaySettings()
    except (ValidationError, SettingsError) as exc:
        exit_on_bad_settings("gateway", exc)
    configure_logging(service="gateway", level=settings.log_level, json=settings.log_json)
    map_large_blocks()
    stop = Stop(settings.stop_grace_s)
    logging.getLogger("uvicorn.error").addFilter(CutByStop(stop))
    logging.getLogger("uvicorn.error").addFilter(RefusedHandshake())
    refused = RefusedAtStart()
    logging.getLogger("uvicorn.error").addFilter(refused)
    try:
        app = create_app(settings, stop)
    except ConfigurationError as exc:  # as `service.run_service` says it: one line, not a traceback
        print(f"switchyard-gateway: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(2)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        http="httptools",
        log_config=None,  # uvicorn's records go through ours: redacted, JSON when asked
        log_level="warning",
        access_log=False,
        # a Responses WebSocket frame over the body limit is refused with an error event, one over twice it
        # is not read: closed with 1009 (`responses_ws`)
        ws_max_size=2 * settings.max_body_bytes,
        timeout_graceful_shutdown=math.ceil(settings.stop_grace_s),
    )
    sockets = (
        [_reuse_port_socket(settings.http_host, settings.http_port)] if settings.http_reuse_port else None
    )
    if tracing.configure("gateway"):
        log.info("exporting traces to %s", tracing.endpoint())
    try:
        Server(config, stop, unready_s=settings.stop_unready_s).run(sockets=sockets)
    finally:
        tracing.shutdown()
        if refused.said is not None:  # the bus refused its credentials (uvicorn exits 3): no retry helps
            print(f"switchyard-gateway: cannot start: {refused.said}", file=sys.stderr)
            sys.exit(2)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other gateway processes on this host can bind too (the kernel balances)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _fence_late_writers(gw: Gateway, fence: ErasedFence) -> None:
    """The stores of an organisation's content remove what they write as it is erased (access/fence.py):
    its files (uploads, batch results), stored responses and conversations, cached answers, batches and
    their vectors, task API states."""
    gw.files.fence = fence
    gw.runs.store.fence = fence
    if gw.responses is not None:
        gw.responses.fence = fence
    if gw.cache is not None:
        gw.cache.store.fence = fence
    if gw.batches is not None:
        gw.batches.store.fence = fence
        if gw.batches.store.vectors is not None:
            gw.batches.store.vectors.fence = fence
