"""The call recorder: every call, answered or failed, is recorded once, and what it raises is in the
executor's error taxonomy (an adapter's own error as it is; anything else as `bad_response`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, FunctionCall, FunctionSpec, ToolCall, ToolSpec, Usage
from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    PromptCounted,
    ProviderCall,
    Reply,
    StreamPart,
    TextDelta,
    ToolCallDelta,
    estimated_prompt,
)
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.recording import CallRecord, RecordingProvider

pytestmark = pytest.mark.unit
CALL = ProviderCall(model="m", messages=(ChatMessage(role="user", content="Hi"),))


class Raising:
    """Fails every way a call can: with `error` on a request, a stream (after one delta) and an embedding."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def request(self, call: ProviderCall) -> Reply:
        raise self.error

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        yield TextDelta("Hel")
        raise self.error

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        raise self.error


async def _each_way(provider: RecordingProvider) -> list[ProviderError]:
    raised: list[ProviderError] = []
    with pytest.raises(ProviderError) as a:
        await provider.request(CALL)
    raised.append(a.value)
    with pytest.raises(ProviderError) as b:
        async for _ in provider.stream(CALL):
            pass
    raised.append(b.value)
    with pytest.raises(ProviderError) as c:
        await provider.embed(EmbeddingCall(model="m", inputs=("x",)))
    raised.append(c.value)
    return raised


@pytest.mark.parametrize(
    ("error", "kind"),
    [(provider_error("rate_limited", "m: slow down"), "rate_limited"), (KeyError("choices"), "bad_response")],
)
async def test_a_failed_call_is_recorded_once_and_raised_in_the_taxonomy(error: Exception, kind: str) -> None:
    records: list[CallRecord] = []

    async def on_call(record: CallRecord) -> None:
        records.append(record)

    provider = RecordingProvider(Raising(error), provider="openai", model="openai/m", on_call=on_call)
    raised = await _each_way(provider)
    assert [e.kind for e in raised] == [kind] * 3
    if isinstance(error, ProviderError):
        assert all(e is error for e in raised)  # the adapter's own error, unchanged
    else:
        # the library's words (`KeyError: 'choices'`) go to the log with the traceback, not to the client
        assert all(
            e.__cause__ is error and e.message == "openai: the answer could not be read" for e in raised
        )
    assert [r.outcome for r in records] == [kind] * 3
    assert records[1].ttft_ms is not None  # the stream had sent text before it failed


class Counted:
    """A stream that says its prompt's count as it begins (Anthropic's `message_start`), streams part of a
    tool call, then breaks."""

    async def request(self, call: ProviderCall) -> Reply:
        raise AssertionError("streamed only")

    async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
        yield PromptCounted(Usage(prompt_tokens=9000, cache_read_tokens=8000))
        yield ToolCallDelta(index=0, id="toolu_1", name="get_weather", arguments='{"city": "Paris, France, ')
        raise provider_error("network", "m: the connection broke")


async def test_a_broken_stream_is_billed_at_the_providers_prompt_count_and_its_tool_call() -> None:
    """What a stream cut after its output began is billed: its prompt as the provider counted it when the
    stream began (it bills that, tools and system included, with its cache reads), not the messages'
    text (2 tokens here), and the tool call it had streamed as output (before: 0 tokens)."""
    records: list[CallRecord] = []

    async def on_call(record: CallRecord) -> None:
        records.append(record)

    provider = RecordingProvider(Counted(), provider="anthropic", model="anthropic/m", on_call=on_call)
    with pytest.raises(ProviderError):
        async for _ in provider.stream(CALL):
            pass
    [record] = records
    assert record.usage_estimated and record.usage is not None
    assert (record.usage.prompt_tokens, record.usage.cache_read_tokens) == (9000, 8000)
    assert record.usage.completion_tokens == len('get_weather{"city": "Paris, France, ') // 4


def test_an_estimated_prompt_counts_the_tools_and_the_tool_calls() -> None:
    """The prompt a provider bills holds the tools offered and the conversation's tool calls, not only
    its messages' text: a coding agent's tools run to tens of thousands of tokens."""
    tool = ToolSpec(
        function=FunctionSpec(name="search", description="x" * 4000, parameters={"type": "object"})
    )
    call = ToolCall(id="c1", function=FunctionCall(name="search", arguments='{"q": "' + "y" * 400 + '"}'))
    with_tools = ProviderCall(
        model="m",
        messages=(
            ChatMessage(role="user", content="Hi"),
            ChatMessage(role="assistant", tool_calls=[call]),
            ChatMessage(role="tool", tool_call_id="c1", content="found"),
        ),
        tools=(tool,),
    )
    assert estimated_prompt(CALL) == 1
    assert estimated_prompt(with_tools) > (4000 + 400) // 4
