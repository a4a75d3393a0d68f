"""OpenAI's reasoning models through the OpenAI adapter, over HTTP, against a fake that refuses what OpenAI
refuses them (a sampling field, an effort they lack, function tools at an effort other than none). The
adapter believes it speaks to OpenAI itself (its settings name OpenAI's URL) while its client is pointed
at the fake: the model rules apply to OpenAI only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    FunctionSpec,
    ProviderCallRecorded,
    Reasoning,
    RouteCandidate,
    RoutingDecision,
    TaskCompleted,
    TaskRouted,
    TaskSubmitted,
    ToolSpec,
)
from switchyard.executor.execution import ExecutionPolicy, execute
from switchyard.executor.providers.base import ProviderCall, Reply
from switchyard.executor.providers.http import make_client
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from switchyard.executor.providers.openai.config import DEFAULT_BASE_URL
from switchyard.executor.resilience.breaker import LocalBreakers
from switchyard.executor.resilience.retry import RetryPolicy
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
WEATHER = ToolSpec(function=FunctionSpec(name="get_weather", parameters={"type": "object"}))
ASK = (ChatMessage(role="user", content="Weather in Paris?"),)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    server = FakeOpenAI()
    with BackgroundServer(server.app) as running:
        yield server, f"{running.url}/v1"


@pytest.fixture
async def openai(fake: tuple[FakeOpenAI, str]) -> AsyncIterator[OpenAIProvider]:
    server, url = fake
    settings = OpenAISettings(api_key=server.api_key, base_url=DEFAULT_BASE_URL)
    adapter = OpenAIProvider(settings, client=make_client(base_url=url, timeout_s=10))
    yield adapter
    await adapter.aclose()


def _call(model: str, **kw: Any) -> ProviderCall:
    return ProviderCall(model=model, messages=ASK, max_tokens=200, **kw)


async def _answer(adapter: OpenAIProvider, call: ProviderCall, streamed: bool) -> Reply:
    if not streamed:
        return await adapter.request(call)
    parts = [p async for p in adapter.stream(call)]
    assert isinstance(parts[-1], Reply)
    return parts[-1]


async def test_the_fake_refuses_what_openai_refuses_these_models(fake: tuple[FakeOpenAI, str]) -> None:
    """Through a compatible server's adapter (the body as the client asked it), the fake answers as OpenAI
    would: so the tests below would fail on an adapter that sent it all."""
    server, url = fake
    as_asked = OpenAIProvider(OpenAISettings(api_key=server.api_key, base_url=url), timeout_s=10)
    refusals = {
        "o3": _call("o3", temperature=0.2),
        "gpt-6-luna": _call("gpt-6-luna", tools=(WEATHER,)),
        "o4-mini": _call("o4-mini", reasoning=Reasoning(effort="xhigh")),
    }
    try:
        for model, call in refusals.items():
            with pytest.raises(ProviderError) as caught:
                await as_asked.request(call)
            assert caught.value.kind == "bad_request", model
        assert "max_tokens" in caught.value.message  # a compatible server's field, refused first
    finally:
        await as_asked.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_tools_with_reasoning_on_gpt_6_go_through_the_responses_api(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str], streamed: bool
) -> None:
    """Chat completions would take these tools only at effort none (the fake refuses them otherwise): the
    Responses API takes them with the effort asked, and the sampling field goes where the effort allows."""
    call = _call("gpt-6-luna", tools=(WEATHER,), temperature=0.2, reasoning=Reasoning(effort="high"))
    reply = await _answer(openai, call, streamed)
    assert reply.content.startswith("Hello!")
    sent = fake[0].requests[-1]
    assert sent.path == "/v1/responses"
    assert (sent.body["reasoning"], len(sent.body["tools"])) == ({"effort": "high"}, 1)
    assert "temperature" not in sent.body
    await _answer(
        openai,
        _call("gpt-6-luna", tools=(WEATHER,), temperature=0.2, reasoning=Reasoning(effort="none")),
        streamed,
    )
    assert fake[0].requests[-1].body["temperature"] == 0.2


@pytest.mark.parametrize("streamed", [False, True])
async def test_o3_answers_without_the_sampling_fields_it_refuses(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str], streamed: bool
) -> None:
    call = _call("o3", temperature=0.2, top_p=0.5, presence_penalty=0.3, seed=3)
    reply = await _answer(openai, call, streamed)
    assert reply.content.startswith("Hello!")
    sent = fake[0].requests[-1].body
    assert not {"temperature", "top_p", "presence_penalty", "max_tokens"} & set(sent)
    assert (sent["seed"], sent["max_completion_tokens"]) == (3, 200)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("model", ["gpt-6.1-sol", "gpt-6-astra"])
async def test_tools_on_a_responses_only_model_are_called_through_the_responses_api(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str], model: str, streamed: bool
) -> None:
    reply = await _answer(openai, _call(model, tools=(WEATHER,), reasoning=Reasoning(effort="max")), streamed)
    assert reply.content.startswith("Hello!") and reply.finish_reason == "stop"
    sent = fake[0].requests[-1]
    assert (sent.path, sent.body["reasoning"]) == ("/v1/responses", {"effort": "max"})
    # without tools the model is called through chat completions, as any other
    await _answer(openai, _call(model, reasoning=Reasoning(effort="none")), streamed)
    assert fake[0].requests[-1].path == "/v1/chat/completions"
    assert fake[0].requests[-1].body["reasoning_effort"] == "low"


@pytest.mark.parametrize(
    ("model", "asked", "sent"),
    [("gpt-5.6-sol", "xhigh", "xhigh"), ("o3", "xhigh", "high"), ("gpt-5", "none", "minimal")],
)
async def test_the_effort_sent_is_the_nearest_the_model_takes(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str], model: str, asked: str, sent: str
) -> None:
    reply = await openai.request(_call(model, reasoning=Reasoning(effort=asked)))
    assert reply.content.startswith("Hello!")
    assert fake[0].requests[-1].body["reasoning_effort"] == sent


async def test_a_refusal_before_the_call_falls_back_and_is_recorded_as_a_400_is(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str]
) -> None:
    """The whole executor path: the first candidate takes tools only through the Responses API, which has
    no stop sequences, so the task goes to the next one, and the refusal is in the call records, as
    OpenAI's own 400 would be."""
    request = ChatRequest(
        messages=list(ASK), tools=[WEATHER], stop=["END"], reasoning=Reasoning(effort="max")
    )
    task = TaskSubmitted(
        task_id="t-rules", tenant_id="acme", user_id="u1", request=request, submitted_at=datetime.now(UTC)
    )
    candidates = [
        RouteCandidate(model=f"openai/{m}", provider="openai", upstream_model=m, tier="smart", reasoning=True)
        for m in ("gpt-6.1-sol", "gpt-6-luna")
    ]
    routed = TaskRouted(
        task=task,
        classification=Classification(
            type="qa", confidence=1, complexity=0.5, urgency=0.5, model_version="t", latency_ms=1
        ),
        decision=RoutingDecision(tier="smart", candidates=candidates, policy_version="t"),
    )
    records: list[ProviderCallRecorded] = []

    async def report(_attempt: int, record: ProviderCallRecorded) -> None:
        records.append(record)

    before = len(fake[0].requests)
    outcome = await execute(
        routed,
        providers={"openai": openai},
        breakers=LocalBreakers(),
        policy=ExecutionPolicy(retry=RetryPolicy(max_retries=1, base_s=0.001), task_deadline_s=10),
        report=report,
    )
    assert isinstance(outcome, TaskCompleted) and outcome.model == "openai/gpt-6-luna"
    assert [(r.model, r.outcome) for r in records] == [
        ("openai/gpt-6.1-sol", "bad_request"),  # not retried: a bad request is not
        ("openai/gpt-6-luna", "ok"),
    ]
    assert "stop sequences" in (records[0].error or "")
    assert [r.body["model"] for r in fake[0].requests[before:]] == ["gpt-6-luna"]
    # gpt-6-luna takes tools with an effort through the Responses API, but stop sequences only in chat
    # completions, where its tools go only at effort none
    sent = fake[0].requests[-1]
    assert (sent.path, sent.body["reasoning_effort"], sent.body["stop"]) == (
        "/v1/chat/completions",
        "none",
        ["END"],
    )
