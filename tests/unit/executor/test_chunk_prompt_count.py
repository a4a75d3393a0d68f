"""The prompt's count on a stream's first output chunk: the provider's where it gave one as its stream
began (Anthropic's message_start), else the router's estimate; only the first output chunk carries it, a
failover drops the failed candidate's, and the fast path of plain text chunks is unchanged after it."""

from __future__ import annotations

import pytest

from switchyard.common.events import Usage
from switchyard.common.streaming import Chunk, decode_chunk
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.execution import _send
from switchyard.executor.providers.base import PromptCounted, TextDelta, ThinkingDelta

pytestmark = pytest.mark.unit


def _sink() -> tuple[ChunkSink, list[bytes]]:
    sent: list[bytes] = []

    async def publish(_subject: str, data: bytes) -> None:
        sent.append(data)

    return ChunkSink(publish, tenant_id="acme", task_id="t1"), sent


def _chunks(sent: list[bytes]) -> list[Chunk]:
    return [decode_chunk(data) for data in sent]


async def test_the_providers_count_goes_on_the_first_output_chunk_only() -> None:
    sink, sent = _sink()
    sink.announce("anthropic/claude-sonnet-5-5")
    sink.estimated(1300)
    await _send(sink, PromptCounted(Usage(prompt_tokens=1200, cache_read_tokens=1000)), logprobs=False)
    await _send(sink, TextDelta("Hel"), logprobs=False)
    await _send(sink, TextDelta("lo"), logprobs=False)
    first, second = _chunks(sent)
    assert first.usage == Usage(prompt_tokens=1200, cache_read_tokens=1000)
    assert first.model == "anthropic/claude-sonnet-5-5" and first.delta == "Hel"
    assert second.usage is None and second.model is None


async def test_without_the_providers_count_the_routers_goes_and_survives_a_failover() -> None:
    sink, sent = _sink()
    sink.announce("anthropic/claude-sonnet-5-5")
    sink.estimated(1300)
    await _send(sink, PromptCounted(Usage(prompt_tokens=1200)), logprobs=False)
    await sink.reset(model="openai/gpt-6-sol")  # that candidate failed before any output
    await _send(sink, ThinkingDelta(text="Let me see"), logprobs=False)
    await _send(sink, TextDelta("Hi"), logprobs=False)
    reset, thinking, text = _chunks(sent)
    assert reset.reset and reset.usage is None
    assert thinking.usage == Usage(prompt_tokens=1300)  # the router's: the failed candidate's count went
    assert text.usage is None


async def test_no_count_known_sends_none() -> None:
    sink, sent = _sink()
    sink.estimated(0)
    await _send(sink, TextDelta("Hi"), logprobs=False)
    [only] = _chunks(sent)
    assert only.usage is None and only.delta == "Hi"
