"""Extended thinking through the Anthropic adapter against a server speaking the Messages protocol: the
thinking blocks of an answer (whole and streamed, signatures included), and a tool loop continued with
them sent back, which the server accepts only with their signatures intact; and the reasoning tokens each
provider counts apart (OpenAI, Gemini) or not (Anthropic), whole and streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, FunctionSpec, Reasoning, ThinkingBlock, ToolSpec
from switchyard.executor.providers.anthropic import AnthropicProvider, AnthropicSettings
from switchyard.executor.providers.base import ProviderCall, Reply, StreamPart, TextDelta, ThinkingDelta
from switchyard.executor.providers.gemini import GeminiProvider, GeminiSettings
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from tests.support.fake_anthropic import REDACTED_DATA, FakeAnthropic, sign
from tests.support.fake_gemini import THOUGHT_SUMMARY, THOUGHT_TOKENS, FakeGemini
from tests.support.fake_openai import REASONED, REASONING, FakeOpenAI, words
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
WEATHER = ToolSpec(function=FunctionSpec(name="get_weather", parameters={"type": "object"}))
THINK = Reasoning(budget_tokens=2048)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeAnthropic, str]]:
    server = FakeAnthropic()
    with BackgroundServer(server.app) as running:
        yield server, running.url


@pytest.fixture
async def provider(fake: tuple[FakeAnthropic, str]) -> AsyncIterator[AnthropicProvider]:
    server, url = fake
    adapter = AnthropicProvider(AnthropicSettings(api_key=server.api_key, base_url=url), timeout_s=10)
    yield adapter
    await adapter.aclose()


def _call(model: str = "model-a", **kw: object) -> ProviderCall:
    ask = (ChatMessage(role="user", content="Weather in Paris?"),)
    return ProviderCall(model=model, messages=ask, max_tokens=4000, **kw)  # type: ignore[arg-type]


async def _parts(provider: AnthropicProvider, call: ProviderCall) -> list[StreamPart]:
    return [p async for p in provider.stream(call)]


async def test_an_answer_brings_its_signed_thinking_whole_and_streamed(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    whole = await provider.request(_call(reasoning=THINK, temperature=0.3))
    assert fake[0].requests[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    (thought,) = whole.thinking
    assert thought.thinking and thought.signature == sign(thought.thinking)
    assert whole.content.startswith("Hello!")
    parts = await _parts(provider, _call(reasoning=THINK))
    streamed = parts[-1]
    assert isinstance(streamed, Reply) and streamed.thinking == whole.thinking
    reasoning = [p for p in parts if isinstance(p, ThinkingDelta)]
    assert len(reasoning) == 3  # the text in two deltas, then the signature that ends the block
    assert "".join(p.text for p in reasoning) == thought.thinking
    assert reasoning[-1].signature == thought.signature
    first_text = next(i for i, p in enumerate(parts) if isinstance(p, TextDelta))
    assert first_text > parts.index(reasoning[-1])  # reasoning first
    # thinking tokens are output tokens, billed as such; Anthropic does not count them apart
    assert streamed.usage.completion_tokens == whole.usage.completion_tokens > 6
    assert whole.usage.reasoning_tokens is None and streamed.usage.reasoning_tokens is None


async def test_redacted_thinking_is_kept_as_data(provider: AnthropicProvider) -> None:
    whole = await provider.request(_call("redacted", reasoning=THINK))
    assert whole.thinking[1] == ThinkingBlock(type="redacted_thinking", data=REDACTED_DATA)
    parts = await _parts(provider, _call("redacted", reasoning=THINK))
    assert ThinkingDelta(redacted=REDACTED_DATA) in parts
    assert isinstance(parts[-1], Reply) and parts[-1].thinking == whole.thinking


async def test_a_tool_loop_goes_on_with_its_thinking_sent_back_intact(
    provider: AnthropicProvider, fake: tuple[FakeAnthropic, str]
) -> None:
    first = await provider.request(_call("tool-call", reasoning=THINK, tools=(WEATHER,)))
    assert first.finish_reason == "tool_calls" and len(first.thinking) == 1
    (called,) = first.tool_calls
    history = (
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(role="assistant", tool_calls=[called], thinking=list(first.thinking)),
        ChatMessage(role="tool", tool_call_id=called.id, content="18C and sunny"),
    )
    after = await provider.request(replace(_call(reasoning=THINK, tools=(WEATHER,)), messages=history))
    assert after.finish_reason == "stop" and after.thinking
    sent = fake[0].requests[-1].body
    assert sent["thinking"]["budget_tokens"] == 2048
    assert sent["messages"][1]["content"][0] == first.thinking[0].model_dump(exclude_none=True)
    # the server checks signatures: a block changed on the way is refused, as Anthropic refuses it
    forged = ThinkingBlock(thinking="Something else.", signature=first.thinking[0].signature)
    tampered = (history[0], history[1].model_copy(update={"thinking": [forged]}), history[2])
    with pytest.raises(ProviderError) as refused:
        await provider.request(replace(_call(reasoning=THINK), messages=tampered))
    assert refused.value.kind == "bad_request" and "signature" in refused.value.message
    # the same loop begun without thinking goes on without it, where Anthropic would refuse thinking
    bare = (history[0], history[1].model_copy(update={"thinking": None}), history[2])
    plain = await provider.request(replace(_call(reasoning=THINK), messages=bare))
    assert not plain.thinking and "thinking" not in fake[0].requests[-1].body


async def test_an_openai_compatible_servers_reasoning_is_unsigned_thinking() -> None:
    """DeepSeek's and vLLM's `reasoning_content` comes back as a thinking block without a signature,
    streamed before the text; no signature means no model is ever sent it back."""
    server = FakeOpenAI()
    with BackgroundServer(server.app) as running:
        adapter = OpenAIProvider(
            OpenAISettings(api_key=server.api_key, base_url=f"{running.url}/v1"), timeout_s=10
        )
        try:
            whole = await adapter.request(_call("reasoner"))
            parts = [p async for p in adapter.stream(_call("reasoner"))]
        finally:
            await adapter.aclose()
    assert whole.thinking == (ThinkingBlock(thinking=REASONING, signature=""),)
    assert whole.content.startswith("Hello!")
    streamed = parts[-1]
    assert isinstance(streamed, Reply) and streamed.thinking == whole.thinking
    first_text = next(i for i, p in enumerate(parts) if isinstance(p, TextDelta))
    reasoning = parts[:first_text]
    assert "".join(p.text for p in reasoning if isinstance(p, ThinkingDelta)) == REASONING
    assert reasoning[-1] == ThinkingDelta(signature="")  # the block ends where the text begins
    # `completion_tokens_details.reasoning_tokens`, within the completion tokens, whole and streamed
    reasoned = len(words(REASONING))
    answered = len(words(whole.content))
    assert (whole.usage.completion_tokens, whole.usage.reasoning_tokens) == (answered + reasoned, reasoned)
    assert streamed.usage == whole.usage


async def test_geminis_thought_summary_is_unsigned_thinking_whole_and_streamed() -> None:
    """Gemini is asked for its thought summary with thinking, which comes back as an unsigned thinking
    block before the text (it was billed but not shown)."""
    server = FakeGemini()
    with BackgroundServer(server.app) as running:
        adapter = GeminiProvider(GeminiSettings(api_key=server.api_key, base_url=running.url), timeout_s=10)
        try:
            call = _call("gemini-3.5-flash", reasoning=Reasoning(effort="medium"))
            whole = await adapter.request(call)
            sent = server.requests[-1].body["generationConfig"]["thinkingConfig"]
            parts = [p async for p in adapter.stream(call)]
            plain = await adapter.request(_call("gemini-3.5-flash"))
            several = await adapter.request(replace(call, n=2))
        finally:
            await adapter.aclose()
    assert sent == {"thinkingLevel": "medium", "includeThoughts": True}
    summary = "".join(THOUGHT_SUMMARY)
    assert whole.thinking == (ThinkingBlock(thinking=summary, signature=""),)
    assert whole.content.startswith("Hello!") and summary not in whole.content
    streamed = parts[-1]
    assert isinstance(streamed, Reply) and streamed.thinking == whole.thinking
    first_text = next(i for i, p in enumerate(parts) if isinstance(p, TextDelta))
    assert "".join(p.text for p in parts[:first_text] if isinstance(p, ThinkingDelta)) == summary
    assert parts[first_text - 1] == ThinkingDelta(signature="")  # the block ends where the text begins
    assert not plain.thinking  # no thinking asked: no summary
    # thoughtsTokenCount: apart from candidatesTokenCount at Gemini, within completion_tokens here
    answered = whole.usage.completion_tokens - THOUGHT_TOKENS
    assert (whole.usage.reasoning_tokens, answered) == (THOUGHT_TOKENS, len(words(whole.content)))
    assert isinstance(streamed, Reply) and streamed.usage == whole.usage
    assert plain.usage.reasoning_tokens == 0 and plain.usage.completion_tokens == len(words(plain.content))
    # several candidates: the thoughts counted once, beside every candidate's tokens
    assert several.usage.reasoning_tokens == THOUGHT_TOKENS
    assert several.usage.completion_tokens == THOUGHT_TOKENS + sum(
        len(words(a)) for a in (several.content, *(c.content for c in several.other_choices))
    )


async def test_openai_reasoning_models_hidden_reasoning_is_counted_whole_and_streamed() -> None:
    """OpenAI's reasoning models show no reasoning but count it (`completion_tokens_details`): at any
    effort but none, in the completion tokens and apart; with several answers, all of theirs."""
    server = FakeOpenAI()
    with BackgroundServer(server.app) as running:
        adapter = OpenAIProvider(
            OpenAISettings(api_key=server.api_key, base_url=f"{running.url}/v1"), timeout_s=10
        )
        try:
            o3 = replace(_call("o3"), max_tokens=None)
            whole = await adapter.request(o3)
            parts = [p async for p in adapter.stream(o3)]
            several = await adapter.request(replace(o3, n=2))
            unreasoned = await adapter.request(replace(o3, model="gpt-5.1"))  # at effort none by default
        finally:
            await adapter.aclose()
    assert not whole.thinking
    assert (whole.usage.completion_tokens, whole.usage.reasoning_tokens) == (
        len(words(whole.content)) + REASONED,
        REASONED,
    )
    streamed = parts[-1]
    assert isinstance(streamed, Reply) and streamed.usage == whole.usage
    assert several.usage.reasoning_tokens == 2 * REASONED
    assert unreasoned.usage.reasoning_tokens == 0  # counted: none, which is not unknown
