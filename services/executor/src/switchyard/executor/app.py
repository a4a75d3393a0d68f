"""The executor service: TaskRouted in; provider-call records, streamed chunks and a result out."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.js.api import RawStreamMsg

from switchyard.common import bus, kv, legacy_subjects, results, subjects, tenants, tracing, vectors
from switchyard.common.background import cancel
from switchyard.common.config import replica_name
from switchyard.common.envelope import MSG_ID, CloudEvent
from switchyard.common.events import (
    ProviderCallRecorded,
    TaskCompleted,
    TaskRouted,
    TaskSubmitted,
)
from switchyard.common.policy import Policy
from switchyard.common.policy_source import PolicySource
from switchyard.common.providers import announce, keep, keep_announced, providers_bucket
from switchyard.common.service import Service, create_service, run_service
from switchyard.executor import cancellation_feed, metrics, stranded
from switchyard.executor.cancellations import Cancellations
from switchyard.executor.carried import CarriedCalls, carried_bucket
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.config import ExecutorSettings
from switchyard.executor.execution import ExecutionPolicy, execute, execute_embedding
from switchyard.executor.kept_vectors import KeptVectors
from switchyard.executor.owed import OwedRecords
from switchyard.executor.providers.anthropic import AnthropicSettings
from switchyard.executor.providers.gemini import GeminiSettings
from switchyard.executor.providers.local import LocalProvider
from switchyard.executor.providers.openai import OpenAISettings
from switchyard.executor.registry import ProviderSet, build_providers
from switchyard.executor.resilience.breaker import BreakerConfig, Breakers, LocalBreakers
from switchyard.executor.resilience.limits import Limit, LocalRateLimits, RateLimits
from switchyard.executor.resilience.retry import RetryPolicy
from switchyard.executor.resilience.shared import KVRateLimits, open_breakers
from switchyard.executor.tool_state import KVToolStates, LocalToolStates, ToolStates, tool_state_bucket

log = logging.getLogger(__name__)

# How far the gateway's clock (a task's `submitted_at`) may be from this one's: beyond it, a first delivery
# is checked against the stream like a redelivery.
CLOCK_SKEW_S = 30.0


def policy_from(settings: ExecutorSettings) -> ExecutionPolicy:
    retry = RetryPolicy(
        max_retries=settings.retry_max,
        base_s=settings.retry_base_s,
        cap_s=settings.retry_cap_s,
        max_retry_after_s=settings.retry_after_max_s,
    )
    return ExecutionPolicy(
        retry=retry,
        call_timeout_s=settings.call_timeout_s,
        task_deadline_s=settings.task_deadline_s,
        stream_idle_s=settings.stream_idle_s,
        stream_max_s=settings.stream_max_s,
        client_retry_after_max_s=settings.retry_after_client_max_s,
    )


def breaker_config(settings: ExecutorSettings) -> BreakerConfig:
    return BreakerConfig(
        failure_threshold=settings.breaker_failures,
        open_s=settings.breaker_open_s,
        half_open_probes=settings.breaker_probes,
    )


def breakers_from(settings: ExecutorSettings) -> LocalBreakers:
    return LocalBreakers(breaker_config(settings), on_change=metrics.breaker_changed)


@dataclass
class State:
    """Breakers, rate limits and tool-call state: in this process, or (default) in KV, which exists once
    connected."""

    breakers: Breakers | None
    limits: RateLimits | None
    tool_states: ToolStates = field(default_factory=LocalToolStates)
    carried: CarriedCalls | None = None  # what runs cut by a stop were billed for (KV, once connected)


def limits_from(settings: ExecutorSettings, policy: Policy) -> dict[str, Limit]:
    """Per provider (settings) and per model id (the policy's rpm/tpm)."""
    by_model = {
        m.id: Limit(rpm=m.rpm, tpm=m.tpm) for m in policy.models if m.rpm is not None or m.tpm is not None
    }
    return {**by_model, **settings.provider_limits}


def followed_policy(settings: ExecutorSettings, state: State) -> PolicySource:
    """The policy file, followed: a reloaded policy's rpm/tpm apply to `state.limits` from the next call
    (the limiter keeps the state of unchanged limits: `RateLimits.set_limits`); an edit that does not
    load changes nothing. The limits are the only thing the executor takes from the policy: a task's
    candidates, their upstream names and prices come with it (the router's decision). The per-provider
    limits are settings, read at start as every setting."""

    def follow(new: Policy | None, error: str | None) -> None:
        if new is not None and state.limits is not None:
            state.limits.set_limits(limits_from(settings, new))

    return PolicySource(
        settings.policy_path,
        check_s=settings.policy_check_s,
        settle_s=settings.policy_settle_s,
        on_reload=follow,
    )


def create(
    settings: ExecutorSettings, *, providers: ProviderSet | None = None, breakers: Breakers | None = None
) -> Service:
    service = create_service("executor", settings)
    found = providers or build_providers(
        settings, openai=OpenAISettings(), anthropic=AnthropicSettings(), gemini=GeminiSettings()
    )
    policy = policy_from(settings)
    instance = replica_name("executor", settings.instance)
    state = State(
        breakers=breakers or (None if settings.shared_state else breakers_from(settings)), limits=None
    )
    policies = followed_policy(settings, state)
    if not settings.shared_state:  # a limiter even when nothing is limited yet: an edit may add limits
        state.limits = LocalRateLimits(limits_from(settings, policies.current()))
    owed = OwedRecords()
    kept = KeptVectors(
        lambda: bus.jetstream(service.broker),
        inline_bytes=settings.embedding_inline_bytes,
        remember_s=settings.embedding_store_ttl_s,
    )
    cancellations = Cancellations(on_cancel=kept.abandon)
    registry: list[tenants.TenantCheck] = []

    async def follow_registry() -> None:
        """The tenants whose tasks may run (a routed task skips the classifier's check when someone
        publishes it on the bus by hand)."""
        bucket = await tenants.registry_bucket(bus.jetstream(service.broker))
        registry.append(tenants.TenantCheck(lambda: bucket, mode=settings.tenant_check))
        await registry[0].start()

    async def stop_registry() -> None:
        for check in registry:
            await check.stop()

    async def shared_state() -> None:
        """Breakers and buckets in KV, so every replica sees the same ones (created once connected)."""
        if not settings.shared_state:
            return
        js = bus.jetstream(service.broker)
        if state.breakers is None:
            breakers = await kv.bucket(js, subjects.KV_BREAKERS)
            shared = await open_breakers(
                breakers, breaker_config(settings), on_change=metrics.breaker_changed
            )
            service.teardown.append(shared.stop)
            state.breakers = shared
        if not isinstance(state.tool_states, KVToolStates):
            state.tool_states = KVToolStates(await tool_state_bucket(js))
        table = limits_from(settings, policies.current())
        limits = KVRateLimits(await kv.bucket(js, subjects.KV_RATE_LIMITS), table)
        await limits.start()
        service.drain.append(limits.close)  # unused leases back to the buckets, while still connected
        state.limits = limits

    async def embedding_store() -> None:
        """The object store for embedding results too large for their event (configured by every start)."""
        await vectors.open_store(
            bus.jetstream(service.broker),
            ttl_s=settings.embedding_store_ttl_s,
            max_bytes=settings.embedding_store_max_bytes,
            replicas=settings.stream_replicas,
        )

    async def carry_calls() -> None:
        state.carried = CarriedCalls(await carried_bucket(bus.jetstream(service.broker)))

    async def warm_up() -> None:
        for provider in found.providers.values():
            if isinstance(provider, LocalProvider):
                provider.warm()

    async def announce_providers() -> None:
        """Announced now, and again every ANNOUNCE_EVERY_S until the drain (providers.py: an announcement
        nobody renews goes stale)."""
        bucket = await providers_bucket(bus.jetstream(service.broker))
        for status in found.statuses(announced_by=instance):
            await announce(bucket, status)
        log.info("providers announced: %s", ", ".join(found.endpoints) or "none")
        renewing = asyncio.create_task(keep_announced(bucket, lambda: found.statuses(announced_by=instance)))
        keeper = await keep(bucket)  # a forged announcement written over at once

        async def stop_renewing() -> None:
            await cancel(renewing)
            await keeper.stop()

        service.drain.append(stop_renewing)

    async def hear_cancellations() -> None:
        """From the stream, so that every replica hears every cancellation, including those published
        before it started (see cancellation_feed.py); before the task consumer starts."""
        sub = await cancellation_feed.follow(bus.jetstream(service.broker), cancellations)
        service.drain.append(sub.unsubscribe)  # after the consumer stopped, while still connected

    async def already_answered(task: TaskSubmitted) -> bool:
        """A redelivered task whose result is already on the stream is not run (and paid for) twice.

        A gateway's task (`origin: http`) has an id the gateway made for it, so only a redelivery, or a
        copy of the event stored past JetStream's duplicate window, can find one: a first delivery of one
        submitted well inside that window skips the stream look-up (a JetStream API round trip per task,
        ~0.3 ms): the router publishes its TaskRouted with an id derived from its input, and any earlier
        copy of it was published after `submitted_at`, so within the window of this one, where the server
        drops it as a duplicate. Another system's task (`origin: bus`) names its own id, and may name it
        again in a new event (a retry after a lost ack, a bug, or a run it hopes is not charged: billing
        charges a task once): always looked up, so a reused id gets its stored result."""
        submitted = task.submitted_at if task.submitted_at.tzinfo else task.submitted_at.replace(tzinfo=UTC)
        age_s = (datetime.now(UTC) - submitted).total_seconds()
        young = -CLOCK_SKEW_S <= age_s < bus.DUPLICATE_WINDOW_S - CLOCK_SKEW_S
        if task.origin == "http" and bus.delivery() == 1 and young:
            return False
        stored = await results.stored(bus.jetstream(service.broker), task.tenant_id, task.task_id)
        if stored is None:  # none, or no result of this tenant's task (results.py: what else is kept there)
            return False
        if stored.subject == subjects.result_subject(task.tenant_id, task.task_id):
            await answer_again(stored)
        # else a release before tenant tokens stored it (`result.<task_id>`), for a task redelivered
        # across the upgrade (docs/operations/upgrades.md): not sent again
        return True

    async def answer_again(stored: RawStreamMsg) -> None:
        """Sends the stored result again, for whoever republished the task past the duplicate window (a
        system retrying a publish it saw no ack of) and subscribed for it: it would hear nothing else. Under
        its own `Nats-Msg-Id`, so within the window the server drops it, and past it the stream's readers
        take its event id once; with the stored headers but the server's own marks."""
        headers = {
            k: v for k, v in (stored.headers or {}).items() if k == MSG_ID or not k.startswith("Nats-")
        }
        if stored.subject is None or MSG_ID not in headers:
            return
        await bus.jetstream(service.broker).publish(stored.subject, stored.data or b"", headers=headers)
        if settings.legacy_subjects:
            await legacy_subjects.copy(
                bus.connection(service.broker), stored.subject, stored.data or b"", headers
            )

    async def on_routed(event: CloudEvent, payload: TaskRouted) -> None:
        task = payload.task
        if await already_answered(task):
            log.info(
                "task %s already has a result; not running it again, its result sent again", task.task_id
            )
            return
        await tenants.refuse(
            registry[0],
            service.events(),
            task,
            answer_id=service.events().derived_id(event.id, "result", tenant_id=task.tenant_id),
        )
        events = service.events()
        # The call records go on the wire as they come and the result after them, in that order (one
        # connection: the stream stores them so), and their acks are awaited together at the end, before
        # the message is acked: the result no longer waits a round trip for the records' acks. A record
        # the stream refused is published again (same id) by its confirmation before the ack.
        sent: list[Callable[[], Awaitable[str]]] = []
        # A redelivery runs the task again: its calls are new ones (paid again), recorded under ids of
        # their own, not dropped by the stream as copies of an earlier run's records.
        delivery = bus.delivery()
        run_of = "" if delivery == 1 else f"run-{delivery}-"
        carried = (
            []
            if delivery == 1 or state.carried is None
            else await state.carried.take(task.tenant_id, task.task_id)
        )

        async def report(attempt: int, record: ProviderCallRecorded) -> None:
            metrics.observe_call(record)
            sent.append(
                await events.send(
                    record,
                    event_id=events.derived_id(event.id, f"{run_of}call-{attempt}", tenant_id=task.tenant_id),
                    tenant_id=task.tenant_id,
                    event_subject=task.task_id,
                )
            )

        embedding = task.embedding() is not None  # no chunks: its vectors come whole, in the result
        chunks = None
        if not embedding and task.chat().stream:
            nc = bus.connection(service.broker)
            chunks = ChunkSink(
                legacy_subjects.both(nc) if settings.legacy_subjects else nc.publish,
                tenant_id=task.tenant_id,
                task_id=task.task_id,
                starts=bool(task.chat().stream_start),  # a previous gateway or a bus client: no seq-0 chunk
            )
        assert state.breakers is not None, "set up before the consumer starts"
        calls_over = False

        @contextlib.contextmanager
        def calling() -> Iterator[None]:
            """Around the run's provider calls: a client's cancellation may stop them (`Cancellations`)."""
            nonlocal calls_over
            try:
                with cancellations.running(task.tenant_id, task.task_id, run):
                    yield
            finally:
                calls_over = True

        async def deliver() -> None:
            """The run's result, published once its records are (one connection: the stream stores them
            in that order), then every ack awaited together."""
            outcome = await run
            metrics.TASKS.labels(metrics.outcome_label(outcome)).inc()
            tracing.annotate(
                task_id=task.task_id,
                outcome=metrics.outcome_label(outcome),
                answered_by=outcome.model if isinstance(outcome, TaskCompleted) else None,
                attempts=outcome.attempts,
            )
            sent.append(
                await events.send(
                    outcome,
                    subject=subjects.result_subject(task.tenant_id, task.task_id),
                    event_id=events.derived_id(event.id, "result", tenant_id=task.tenant_id),
                    tenant_id=task.tenant_id,
                    event_subject=task.task_id,
                )
            )
            # Each confirmation re-publishes (same id) what was not acked. A result still refused leaves
            # the message unacked, so it is redelivered; a record still refused is owed (see owed.py),
            # since a redelivery finds the stored result and runs nothing.
            confirmed = await asyncio.gather(*(confirm() for confirm in sent), return_exceptions=True)
            refused = [
                c for c, done in zip(sent[:-1], confirmed[:-1], strict=True) if isinstance(done, Exception)
            ]
            if refused:
                log.warning(
                    "task %s: the stream refused %d provider-call records; owed", task.task_id, len(refused)
                )
                owed.add(refused)
            if isinstance(confirmed[-1], BaseException):
                raise confirmed[-1]

        # Its own asyncio task, so that a client's cancellation can stop it, and only while its provider
        # calls run (`calling`): one heard later finds nothing to stop, and the answer, its records and
        # this handler's publishing and ack go on as for any task.
        running = functools.partial(
            functools.partial(execute_embedding, keep=kept.keep)
            if embedding
            else functools.partial(execute, chunks=chunks, states=state.tool_states),
            payload,
            providers=found.providers,
            breakers=state.breakers,
            policy=policy,
            report=report,
            limits=state.limits,
            cancelled=lambda: cancellations.asked(task.tenant_id, task.task_id),
            interruptible=calling,
            carried=carried,
            on_cut=None
            if state.carried is None
            else functools.partial(state.carried.keep, task.tenant_id, task.task_id),
        )
        run = asyncio.create_task(running())
        delivering = asyncio.ensure_future(deliver())
        try:
            await asyncio.shield(delivering)
        except asyncio.CancelledError:
            # The service's stop cut this handler (its grace ran out). Provider calls still running are
            # cut: the run records them, keeps what it was billed for for the run that redoes the task,
            # and the message goes back to the stream. Once the calls have ended, the answer exists and
            # was paid for: its settling and delivery take milliseconds and go on, rather than a redo
            # paying for it again and nobody billing the first.
            if not calls_over and not run.done():
                run.cancel()
                await asyncio.gather(delivering, return_exceptions=True)
                if run.cancelled() or delivering.cancelled() or delivering.exception() is not None:
                    raise
                # A stream its client was reading ended on the cut (`executor_stopping`): its result is
                # out, and the message is acked rather than redone from the stream's first word.
                log.info("task %s: its stream was cut by its executor's stop; ended", task.task_id)
            else:
                log.info("task %s: answered as its executor stopped; delivering its result", task.task_id)
                await delivering
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()

    service.setup.extend(
        [
            warm_up,
            shared_state,
            policies.start,
            embedding_store,
            carry_calls,
            announce_providers,
            hear_cancellations,
            follow_registry,
        ]
    )
    service.teardown.append(stop_registry)
    service.drain.append(owed.close)  # after the consumer stopped, while still connected
    service.drain.append(kept.drain)  # abandoned vectors still being deleted
    service.teardown.append(found.aclose)
    service.teardown.append(policies.stop)
    bus.subscribe(
        service.broker,
        consumer=subjects.EXECUTOR_CONSUMER,
        service="executor",
        publisher=service.events,
        expected=[TaskRouted],
        handler=on_routed,
        max_workers=settings.executor_concurrency,
        heartbeat_s=settings.heartbeat_s,
        ack_wait_s=settings.ack_wait_s,
        batch_size=1,  # pull one at a time, so idle replicas get the next task rather than a busy one
        description="Runs each routed task on its candidate chain: retries, breakers, fallback, streaming.",
        dead_letters=[tenants.UnknownTenant.code],
    )
    served = policies.current().models
    metrics.at_start((model.provider, model.id) for model in served if model.provider in found.providers)

    async def sweep_stranded() -> None:
        bus.add_consumer(service.broker, stranded.consumer(bus.jetstream(service.broker), service.events()))

    service.setup.append(sweep_stranded)
    return service


def main() -> None:
    def build() -> tuple[Service, ExecutorSettings]:
        settings = ExecutorSettings()
        return create(settings), settings

    run_service(build, name="executor")
