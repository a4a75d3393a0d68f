"""A provider answering 429 with `Retry-After: 86400` (a day), through the real OpenAI and Anthropic
adapters: the executor moves on at once (it never waited for it) and the failed task passes on at most
SWITCHYARD_RETRY_AFTER_CLIENT_MAX_S, saying in its message what the provider asked and where the cap is
set. Before, the task.failed event and the gateway's 503 carried `Retry-After: 86400`: a client honouring
it waited a day for a platform that routes elsewhere, and whose breaker probes the provider in a minute."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
)
from switchyard.executor.execution import ExecutionPolicy, execute
from switchyard.executor.providers.anthropic import AnthropicProvider, AnthropicSettings
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from switchyard.executor.resilience.breaker import BreakerConfig, LocalBreakers
from switchyard.executor.resilience.retry import RetryPolicy
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
DAY = "86400"


async def _openai(_request: Request) -> JSONResponse:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    return JSONResponse(body, status_code=429, headers={"retry-after": DAY})


async def _anthropic(_request: Request) -> JSONResponse:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}}
    return JSONResponse(body, status_code=429, headers={"retry-after": DAY})


APP = Starlette(
    routes=[
        Route("/v1/chat/completions", _openai, methods=["POST"]),
        Route("/v1/messages", _anthropic, methods=["POST"]),
    ]
)


async def _ignore(_attempt: int, _record: ProviderCallRecorded) -> None:
    return None


def _routed(*candidates: RouteCandidate) -> TaskRouted:
    request = ChatRequest(messages=[ChatMessage(role="user", content="hi")], max_tokens=8)
    task = TaskSubmitted(task_id="t-day", tenant_id="acme", request=request, submitted_at=datetime.now(UTC))
    classification = Classification(
        type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
    )
    decision = RoutingDecision(tier="fast", candidates=list(candidates), policy_version="t")
    return TaskRouted(task=task, classification=classification, decision=decision)


@pytest.mark.parametrize("cap_s", [300.0, 30.0])
async def test_a_days_retry_after_is_capped_and_said(cap_s: float) -> None:
    oa = RouteCandidate(model="oa/gpt", provider="oa", upstream_model="gpt", tier="fast")
    an = RouteCandidate(model="an/claude", provider="an", upstream_model="claude", tier="fast")
    policy = ExecutionPolicy(
        retry=RetryPolicy(max_retries=2, base_s=0.01, cap_s=0.05), client_retry_after_max_s=cap_s
    )
    with BackgroundServer(APP) as server:
        providers = {
            "oa": OpenAIProvider(OpenAISettings(api_key="sk-test-0123456789", base_url=f"{server.url}/v1")),
            "an": AnthropicProvider(AnthropicSettings(api_key="sk-ant-test-0123456789", base_url=server.url)),
        }
        try:
            started = time.monotonic()
            outcome = await execute(
                _routed(oa, an),
                providers=providers,
                breakers=LocalBreakers(BreakerConfig()),
                policy=policy,
                report=_ignore,
            )
            took = time.monotonic() - started
        finally:
            for provider in providers.values():
                await provider.aclose()
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_rate_limited", outcome
    assert took < 5 and outcome.attempts == 2  # neither model retried into its day-long wait
    assert outcome.retry_after_s == cap_s
    assert f"the provider asked to wait 86400 s; capped at {cap_s:g} s" in outcome.error_message
    assert "SWITCHYARD_RETRY_AFTER_CLIENT_MAX_S" in outcome.error_message
