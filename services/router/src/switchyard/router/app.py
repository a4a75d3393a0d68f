"""The router service: TaskClassified in, TaskRouted out (or TaskFailed when nothing can serve it); and,
as a second consumer, provider-call events folded into the model statistics the replicas share."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from switchyard.common import bus, invalid, kv, subjects, tracing
from switchyard.common.config import CommonSettings
from switchyard.common.envelope import CloudEvent
from switchyard.common.errors import InvalidEvent, NoProviderAvailable
from switchyard.common.events import (
    ChatRequest,
    EmbeddingRequest,
    ProviderCallRecorded,
    RoutingDecision,
    TaskClassified,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
)
from switchyard.common.policy import Policy
from switchyard.common.policy_source import PolicySource
from switchyard.common.providers import AvailableProviders
from switchyard.common.service import Service, create_service, run_service
from switchyard.common.tokens import PromptCounts, count_inputs, encoding
from switchyard.router import metrics
from switchyard.router.adaptive import RollingQuantile, premium_threshold
from switchyard.router.board import HealthBoard
from switchyard.router.embedding import EmbeddingRefused, decide_embedding
from switchyard.router.routing import AUTO, ContextTooLong, UnknownModel, decide
from switchyard.router.stats import DEFAULT_LINGER_S, StatsWriter
from switchyard.router.truncation import fitted

log = logging.getLogger(__name__)
# An embedding task's texts are tokenised off the event loop above this many characters (~1 ms of cl100k
# per 4,000 characters; a 1 MiB body is about 0.25 s).
TOKENISE_INLINE_CHARS = 100_000


class RouterSettings(CommonSettings):
    providers_refresh_s: float = 2.0
    health_refresh_s: float = Field(default=1.0, gt=0, description="how stale the health view may be")
    stats_linger_s: float = Field(
        default=DEFAULT_LINGER_S,
        ge=0,
        description="provider calls are taken from the bus in bursts this far apart, and the calls of one "
        "model this close together are folded into one KV write",
    )


def _on_reload(policy: Policy | None, error: str | None) -> None:
    metrics.POLICY_RELOADS.labels("ok" if error is None else "invalid").inc()
    if policy is not None:
        metrics.POLICY_INFO.clear()
        metrics.POLICY_INFO.labels(policy.version, policy.fingerprint()).set(1)


def create(settings: RouterSettings) -> Service:
    service = create_service("router", settings)
    policies = PolicySource(
        settings.policy_path,
        check_s=settings.policy_check_s,
        settle_s=settings.policy_settle_s,
        on_reload=_on_reload,
    )
    _on_reload(policies.current(), None)
    metrics.at_start(policies.current())
    providers = AvailableProviders(
        lambda: bus.jetstream(service.broker), refresh_s=settings.providers_refresh_s
    )
    boards: list[HealthBoard] = []
    recent = [RollingQuantile(policies.current().thresholds.window)]
    counts = PromptCounts()

    def board() -> HealthBoard:
        if not boards:
            boards.append(HealthBoard(bus.jetstream(service.broker), refresh_s=settings.health_refresh_s))
        return boards[0]

    stats = StatsWriter(
        lambda: kv.bucket(bus.jetstream(service.broker), subjects.KV_ROUTING_STATS),
        linger_s=settings.stats_linger_s,
    )
    watcher: list[asyncio.Task[None]] = []

    async def warm_up() -> None:
        encoding()  # load the tokenizer before the first task, not during it
        watcher.append(asyncio.create_task(policies.watch(), name="policy-watch"))
        await stats.start()

    async def stop_watching() -> None:
        for task in watcher:
            task.cancel()
        await stats.stop()

    async def situation(task: TaskSubmitted, policy: Policy) -> dict[str, Any]:
        """What a decision reads besides the task's request: the policy, the providers up, the tenant's
        budget headroom and the models' health."""
        return {
            "policy": policy,
            "available": await providers.names(),
            "tenant_id": task.tenant_id,
            "headroom_usd": await board().headroom(task.tenant_id),
            "health": await board().signals(policy),
            "allowed_models": task.allowed_models,
        }

    async def route_chat(payload: TaskClassified, policy: Policy) -> tuple[RoutingDecision, TaskSubmitted]:
        """The decision and the task it routes: the task as submitted, or, when it asked for truncation
        and no model's window takes it, its oldest turns dropped to fit the largest (`truncation.py`)."""
        task = payload.task
        request = task.chat()
        if request.model == AUTO:
            recent[0].add(payload.classification.complexity, window=policy.thresholds.window)

        async def decided(request: ChatRequest, tokens: int) -> RoutingDecision:
            return decide(
                request=request,
                classification=payload.classification,
                prompt_tokens=tokens,
                adaptive_premium=premium_threshold(recent[0]),
                budget_calls=None if task.budget is None else task.budget.calls,
                **await situation(task, policy),
            )

        tokens = await counts.count_off_loop(request, tenant_id=task.tenant_id)
        try:
            return await decided(request, tokens), task
        except ContextTooLong as exc:
            if request.truncation != "auto":
                raise
            cut = await asyncio.to_thread(fitted, request, prompt_tokens=tokens, room=exc.room)
            if cut is None:
                raise
            log.info(
                "task %s: %d of its %d messages dropped to fit a context window of %d tokens",
                task.task_id,
                len(request.messages) - len(cut.messages),
                len(request.messages),
                exc.window,
            )
            tokens = await counts.count_off_loop(cut, tenant_id=task.tenant_id)
            return await decided(cut, tokens), task.model_copy(update={"request": cut})

    async def route_embedding(
        task: TaskSubmitted, request: EmbeddingRequest, policy: Policy
    ) -> RoutingDecision:
        """Never in the adaptive complexity window: an embedding task's complexity (0) is not a prompt's."""
        texts = request.input
        big = sum(len(t) for t in texts) > TOKENISE_INLINE_CHARS
        tokens = await asyncio.to_thread(count_inputs, texts) if big else count_inputs(texts)
        return decide_embedding(request=request, prompt_tokens=tokens, **await situation(task, policy))

    async def on_classified(event: CloudEvent, payload: TaskClassified) -> None:
        task = payload.task
        policy = policies.current()
        started = time.perf_counter()
        embedding = task.embedding()
        try:
            if embedding is None:
                decision, task = await route_chat(payload, policy)
            else:
                decision = await route_embedding(task, embedding, policy)
        except (UnknownModel, NoProviderAvailable, EmbeddingRefused) as exc:
            metrics.REJECTED.labels(exc.code).inc()
            tracing.annotate(task_id=task.task_id, refused=exc.code)
            failed = TaskFailed(
                task_id=task.task_id,
                tenant_id=task.tenant_id,
                user_id=task.user_id,
                error_code=exc.code,
                error_message=exc.message,
                failed_at=datetime.now(UTC),
            )
            await service.events().publish(
                failed,
                subject=subjects.result_subject(task.tenant_id, task.task_id),
                event_id=service.events().derived_id(event.id, "result", tenant_id=task.tenant_id),
                tenant_id=task.tenant_id,
                event_subject=task.task_id,
            )
            return
        metrics.observe_decision(decision, time.perf_counter() - started)
        tracing.annotate(
            task_id=task.task_id,
            route_strategy=decision.strategy,
            route_tier=decision.tier,
            route_model=decision.candidates[0].model,
            route_candidates=len(decision.candidates),
        )
        routed = TaskRouted(task=task, classification=payload.classification, decision=decision)
        await service.events().publish(
            routed,
            event_id=service.events().derived_id(event.id, "routed", tenant_id=task.tenant_id),
            tenant_id=task.tenant_id,
            event_subject=task.task_id,
        )

    async def on_invalid(raw: bytes, exc: InvalidEvent, _subject: str) -> None:
        # a classification it cannot read (a type it does not know...): its submitter is told, not left
        # waiting for its timeout
        await invalid.tell_submitter(service.events(), raw, exc.message, at="task", code=exc.code)

    async def on_call(event: CloudEvent, payload: ProviderCallRecorded) -> None:
        health = policies.current().health
        if await stats.record(event.id, payload, alpha=health.ema_alpha, recovery_s=health.recovery_s):
            metrics.STATS_UPDATES.inc()

    service.setup.append(warm_up)
    service.teardown.append(stop_watching)
    bus.subscribe(
        service.broker,
        consumer=subjects.ROUTER_CONSUMER,
        service="router",
        publisher=service.events,
        expected=[TaskClassified],
        handler=on_classified,
        max_workers=8,
        description="Chooses a strategy and candidate chain for each classified task, with its reasons.",
        on_invalid=on_invalid,
    )
    bus.subscribe(
        service.broker,
        consumer=subjects.ROUTER_STATS_CONSUMER,
        service="router",
        publisher=service.events,
        expected=[ProviderCallRecorded],
        handler=on_call,
        max_workers=64,  # handlers mostly wait for their batch's write: room for a batch to fill
        gather_s=settings.stats_linger_s,
        description="Learns EMA success and latency per model from provider calls (shared through KV).",
    )
    return service


def main() -> None:
    def build() -> tuple[Service, RouterSettings]:
        settings = RouterSettings()
        return create(settings), settings

    run_service(build, name="router")
