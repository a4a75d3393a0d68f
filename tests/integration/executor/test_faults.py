"""Fault injection under concurrent load, through the real adapters and local servers: one provider down,
one answering 429 with Retry-After, one slow. Tasks still succeed, the down provider's breaker opens and
stops the calls, recovers once the provider is back, and no task is answered (charged) twice."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskCompleted,
    TaskRouted,
    TaskSubmitted,
)
from switchyard.executor.execution import ExecutionPolicy, execute
from switchyard.executor.providers.anthropic import AnthropicProvider, AnthropicSettings
from switchyard.executor.providers.base import Provider
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerState, LocalBreakers
from switchyard.executor.resilience.retry import RetryPolicy
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.ports import RefusedPort
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
TASKS = 200
CONCURRENCY = 20
OPEN_S = 1.0
DOWN = RouteCandidate(model="down/gpt-down", provider="down", upstream_model="gpt-down", tier="fast")
LIMITED = RouteCandidate(model="limited/claude", provider="limited", upstream_model="limited-60", tier="fast")
SLOW = RouteCandidate(model="slow/gpt-slow", provider="slow", upstream_model="slow-0.05", tier="standard")
POLICY = ExecutionPolicy(
    retry=RetryPolicy(max_retries=1, base_s=0.01, cap_s=0.05, max_retry_after_s=0.2),
    call_timeout_s=5,
    task_deadline_s=20,
)


def routed(n: int) -> TaskRouted:
    request = ChatRequest(messages=[ChatMessage(role="user", content=f"question {n}")], max_tokens=20)
    task = TaskSubmitted(task_id=f"t{n}", tenant_id="acme", request=request, submitted_at=datetime.now(UTC))
    classification = Classification(
        type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
    )
    decision = RoutingDecision(tier="fast", candidates=[DOWN, LIMITED, SLOW], policy_version="t")
    return TaskRouted(task=task, classification=classification, decision=decision)


async def test_tasks_survive_a_down_a_rate_limited_and_a_slow_provider() -> None:
    openai_fake, anthropic_fake = FakeOpenAI(), FakeAnthropic()
    down = RefusedPort()
    down_port = down.port
    changes: list[tuple[str, BreakerState]] = []
    breakers = LocalBreakers(
        BreakerConfig(failure_threshold=5, open_s=OPEN_S), on_change=lambda k, s: changes.append((k, s))
    )
    calls: dict[str, list[ProviderCallRecorded]] = defaultdict(list)

    async def run(n: int, providers: dict[str, Provider], gate: asyncio.Semaphore) -> object:
        async def report(_attempt: int, record: ProviderCallRecorded) -> None:
            calls[record.task_id].append(record)

        async with gate:
            return await execute(
                routed(n), providers=providers, breakers=breakers, policy=POLICY, report=report
            )

    with down, BackgroundServer(openai_fake.app) as slow, BackgroundServer(anthropic_fake.app) as limited:
        providers: dict[str, Provider] = {
            "down": OpenAIProvider(
                OpenAISettings(api_key=openai_fake.api_key, base_url=f"http://127.0.0.1:{down_port}/v1")
            ),
            "limited": AnthropicProvider(
                AnthropicSettings(api_key=anthropic_fake.api_key, base_url=limited.url)
            ),
            "slow": OpenAIProvider(OpenAISettings(api_key=openai_fake.api_key, base_url=f"{slow.url}/v1")),
        }
        gate = asyncio.Semaphore(CONCURRENCY)
        started = time.monotonic()
        outcomes = await asyncio.gather(*(run(n, providers, gate) for n in range(TASKS)))
        load_s = time.monotonic() - started

        completed = [o for o in outcomes if isinstance(o, TaskCompleted)]
        assert len(completed) / TASKS >= 0.995, [o for o in outcomes if not isinstance(o, TaskCompleted)][:3]
        for done in completed:  # one answer per task, so one charge
            ok = [r for r in calls[done.task_id] if r.outcome == "ok"]
            assert len(ok) == 1 and ok[0].usage == done.usage and ok[0].model == done.model

        down_states = [s for k, s in changes if k == "down/gpt-down"]
        probes = down_states.count(BreakerState.HALF_OPEN)
        assert down_states[0] is BreakerState.OPEN
        assert probes <= load_s / OPEN_S + 1
        down_calls = sum(1 for records in calls.values() for r in records if r.provider == "down")
        # Only the calls already in flight when the fifth failure came back, and one probe per cool-down.
        assert down_calls <= CONCURRENCY + 5 + probes, down_calls
        for records in calls.values():  # a Retry-After longer than we wait moved on: no retry of that model
            assert sum(1 for r in records if r.provider == "limited" and r.outcome == "rate_limited") <= 1
        assert any(r.outcome == "rate_limited" for records in calls.values() for r in records)

        # The provider comes back: after the cool-down one probe succeeds and it takes the traffic again.
        down.release()
        with BackgroundServer(openai_fake.app, port=down_port):
            await asyncio.sleep(OPEN_S)
            again = [await run(TASKS + n, providers, gate) for n in range(3)]
        assert all(isinstance(o, TaskCompleted) and o.provider == "down" for o in again)
        assert await breakers.state("down/gpt-down") is BreakerState.CLOSED
        for provider in providers.values():
            await provider.aclose()  # type: ignore[attr-defined]
