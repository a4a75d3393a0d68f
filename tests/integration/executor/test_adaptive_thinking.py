"""Adaptive thinking through the Anthropic adapter against a server speaking the Messages protocol, which
takes each `thinking` type only from the models Anthropic takes it from: Opus 4.7 refuses a budget, Haiku
4.5 refuses adaptive thinking, efforts are checked per model. Whatever form the client asked for, each model
is sent the one it takes, and its signed thinking comes back (whole, streamed, omitted) and goes back."""

from __future__ import annotations

from dataclasses import replace

import httpx
import orjson
import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, Reasoning
from switchyard.executor.providers.anthropic import AnthropicProvider
from switchyard.executor.providers.base import ProviderCall, Reply, ThinkingDelta
from tests.integration.executor.test_thinking_adapters import WEATHER, fake, provider
from tests.support.fake_anthropic import OMITTED, FakeAnthropic, sign

pytestmark = pytest.mark.integration
__all__ = ["fake", "provider"]  # fixtures, shared with the extended-thinking tests


def _call(model: str, reasoning: Reasoning | None, **kw: object) -> ProviderCall:
    ask = (ChatMessage(role="user", content="Weather in Paris?"),)
    return ProviderCall(model=model, messages=ask, max_tokens=30000, reasoning=reasoning, **kw)  # type: ignore[arg-type]


async def _raw(fake: tuple[FakeAnthropic, str], body: dict[str, object]) -> httpx.Response:
    """A body sent to the fake as is, not through the adapter: what the server says of it."""
    server, url = fake
    headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=url) as client:
        return await client.post("/v1/messages", json=body, headers=headers)


def _sent(fake: tuple[FakeAnthropic, str]) -> dict[str, object]:
    return fake[0].requests[-1].body  # type: ignore[no-any-return]


async def test_a_budget_asked_of_a_model_that_refuses_budgets_is_sent_as_adaptive_thinking(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    whole = await provider.request(_call("claude-opus-4-7", Reasoning(budget_tokens=20000), temperature=0.3))
    assert _sent(fake)["thinking"] == {"type": "adaptive"}
    assert _sent(fake)["output_config"] == {"effort": "high"}
    (thought,) = whole.thinking
    assert thought.thinking and thought.signature == sign(thought.thinking)
    parts = [p async for p in provider.stream(_call("claude-opus-4-7", Reasoning(effort="xhigh")))]
    assert _sent(fake)["output_config"] == {"effort": "xhigh"}
    assert isinstance(parts[-1], Reply) and parts[-1].thinking == whole.thinking
    assert any(isinstance(p, ThinkingDelta) and p.signature for p in parts)


async def test_adaptive_thinking_asked_of_an_older_model_is_sent_as_its_budget(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    reply = await provider.request(_call("claude-haiku-4-5", Reasoning(adaptive=True, effort="low")))
    assert _sent(fake)["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert reply.thinking


async def test_an_effort_the_model_does_not_take_steps_down(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    await provider.request(_call("claude-sonnet-4-6", Reasoning(adaptive=True, effort="max")))
    assert _sent(fake)["output_config"] == {"effort": "high"}
    # the server refuses what Sonnet 4.6 does not take, so the step down is what made the call succeed
    response = await _raw(fake, {**_sent(fake), "output_config": {"effort": "max"}})
    assert response.status_code == 400 and "output_config.effort" in response.text
    # and a budget sent to a model that takes only adaptive thinking is refused, as Anthropic refuses it
    budget = {
        **_sent(fake),
        "model": "claude-opus-4-7",
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    response = await _raw(fake, budget)
    assert response.status_code == 400 and "thinking.type.enabled is not supported" in response.text


async def test_omitted_thinking_goes_round_a_tool_loop_begun_without_thinking(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    """The loop's first turn was answered without thinking (by another model); with adaptive thinking
    the next turn keeps it, and its omitted block (a signature, no text) goes back on the turn after."""
    model = "claude-opus-4-7:tool-call"
    think = Reasoning(adaptive=True, display="omitted")
    first = await provider.request(_call(model, None, tools=(WEATHER,)))
    (called,) = first.tool_calls
    history = (
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(role="assistant", tool_calls=[called]),
        ChatMessage(role="tool", tool_call_id=called.id, content="18C and sunny"),
    )
    second = await provider.request(replace(_call(model, think, tools=(WEATHER,)), messages=history))
    assert _sent(fake)["thinking"] == {"type": "adaptive", "display": "omitted"}
    (omitted,) = second.thinking
    assert omitted.thinking == "" and (omitted.signature or "").startswith(OMITTED)
    again = (
        *history,
        ChatMessage(role="assistant", tool_calls=list(second.tool_calls), thinking=[omitted]),
        ChatMessage(role="tool", tool_call_id=second.tool_calls[0].id, content="19C"),
    )
    await provider.request(replace(_call(model, think, tools=(WEATHER,)), messages=again))
    assert _sent(fake)["messages"][3]["content"][0] == omitted.model_dump(exclude_none=True)  # type: ignore[index]
    # a budget on the same loop would be refused by a model before 4.6 (no thinking block in turn 1):
    # it goes without thinking there
    older = await provider.request(replace(_call("claude-haiku-4-5", think), messages=history))
    assert not older.thinking and "thinking" not in _sent(fake)


async def test_claude_5_5_answers_without_the_settings_it_refuses(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    """Claude 5.5 always thinks: a temperature is left out (the server would refuse it), its omitted
    thinking comes back, and a forced tool fails before any call."""
    reply = await provider.request(_call("claude-sonnet-5-5", None, temperature=0.2))
    assert "temperature" not in _sent(fake) and reply.content
    (omitted,) = reply.thinking
    assert omitted.thinking == "" and (omitted.signature or "").startswith(OMITTED)
    calls = len(fake[0].requests)
    with pytest.raises(ProviderError) as refused:
        await provider.request(
            _call("claude-opus-5-5:tool-call", None, tools=(WEATHER,), tool_choice="required")
        )
    assert refused.value.kind == "bad_request" and len(fake[0].requests) == calls
    # the server's side of it: what the adapter leaves out is refused there
    response = await _raw(fake, {**_sent(fake), "temperature": 0.2})
    assert response.status_code == 400 and "temperature" in response.text


async def test_a_claude_5_5_turn_after_another_models_turn_drops_its_blocks_instead_of_failing(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    """Claude 5.5's thinking blocks are bound to the model that made them: Opus 5.5 refuses Sonnet 5.5's
    with a 400 ("bound to a different conversation") unless the request asks for such blocks to be
    dropped. A router moves a conversation between models, so the adapter asks for it whenever blocks go
    back to such a model (with the beta header the setting needs), and the turn is answered."""
    first = await provider.request(_call("claude-sonnet-5-5:tool-call", None, tools=(WEATHER,)))
    (called,) = first.tool_calls
    assert first.thinking  # Sonnet 5.5 thinks unasked
    history = (
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(role="assistant", tool_calls=[called], thinking=list(first.thinking)),
        ChatMessage(role="tool", tool_call_id=called.id, content="18C and sunny"),
    )
    after = await provider.request(
        replace(_call("claude-opus-5-5", None, tools=(WEATHER,)), messages=history)
    )
    assert after.content
    sent = fake[0].requests[-1]
    assert sent.body["messages"][1]["content"][0] == first.thinking[0].model_dump(exclude_none=True)
    assert sent.body["thinking"]["block_binding"] == {"prefix_mismatch_behavior": "drop_block"}
    assert sent.headers.get("anthropic-beta") == "thinking-binding-controls-2026-08-01"
    # the same request without the setting is what Opus 5.5 refuses
    bare = {k: v for k, v in sent.body.items() if k != "thinking"}
    response = await _raw(fake, bare)
    assert response.status_code == 400 and "bound to a different conversation" in response.text


async def test_a_json_schema_goes_to_claude_as_structured_outputs(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    """A schema the answer must match goes as `output_config.format` (held to it, not asked for it). One
    Anthropic refuses (an object left open) fails before any call, so the next candidate answers."""
    closed = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": closed, "strict": True}}
    reply = await provider.request(_call("claude-sonnet-5-5", None, response_format=fmt))
    assert _sent(fake)["output_config"] == {"format": {"type": "json_schema", "schema": closed}}
    assert "system" not in _sent(fake) and orjson.loads(reply.content) == {"city": "Paris", "days": 1}
    open_schema = {**fmt, "json_schema": {**fmt["json_schema"], "schema": {"type": "object"}}}
    calls = len(fake[0].requests)
    with pytest.raises(ProviderError) as refused:
        await provider.request(_call("claude-sonnet-5-5", None, response_format=open_schema))
    assert refused.value.kind == "bad_request" and "additionalProperties" in refused.value.message
    assert len(fake[0].requests) == calls and not refused.value.sent
    # what the adapter spares the server: it refuses that schema
    body = {**_sent(fake), "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}
    response = await _raw(fake, body)
    assert response.status_code == 400 and "additionalProperties" in response.text
