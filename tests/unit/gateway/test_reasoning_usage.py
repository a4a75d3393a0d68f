"""Reasoning tokens on every face that has a field for them, whole and streamed: OpenAI's
`completion_tokens_details.reasoning_tokens`, the Responses API's `output_tokens_details.reasoning_tokens`,
Gemini's `thoughtsTokenCount` (apart from its candidates' tokens); absent (or the 0 a required field
needs) when the provider did not count them; inside the completion tokens everywhere, never added twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from switchyard.common.envelope import encode
from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted, Usage
from switchyard.common.streaming import Chunk
from switchyard.gateway import (
    completions,
    legacy,
    messages_render,
    responses,
    responses_render,
    responses_stream,
)
from switchyard.gateway.gemini import render as gemini_render
from switchyard.gateway.taskapi.models import TaskState
from switchyard.gateway.taskapi.store import with_outcome
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit
PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
REASONED = Usage(prompt_tokens=12, completion_tokens=80, reasoning_tokens=64)
UNCOUNTED = Usage(prompt_tokens=12, completion_tokens=80)  # Anthropic's: thinking inside, not apart


def _done(usage: Usage) -> TaskCompleted:
    return TaskCompleted(
        task_id="t1",
        tenant_id="acme",
        model="openai/o3",
        provider="openai",
        tier="premium",
        content="Paris.",
        finish_reason="stop",
        usage=usage,
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )


def _chat_task() -> TaskSubmitted:
    body = orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    return completions.build_task(
        completions.parse_request(body, max_prompt_chars=1000), PRINCIPAL, priority=None
    )


def _responses_task() -> TaskSubmitted:
    parsed = responses.parse_request(orjson.dumps({"model": "auto", "input": "hi"}), max_prompt_chars=1000)
    return completions.build_task(parsed, PRINCIPAL, priority=None)


async def _nothing_more() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    return
    yield


def _data(events: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(e.split(b"data: ", 1)[1]) for e in events if b"data: {" in e]


async def test_chat_completions_say_the_reasoning_tokens_whole_and_in_the_usage_chunk() -> None:
    task = _chat_task()
    assert orjson.loads(completions.completion_json(task, _done(REASONED)))["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 80,
        "total_tokens": 92,
        "completion_tokens_details": {"reasoning_tokens": 64},
    }
    stream = completions.stream_events(
        task, [_done(REASONED)], _nothing_more(), timeout_s=5, include_usage=True
    )
    last = _data([e async for e in stream])[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens_details"] == {"reasoning_tokens": 64}
    # the legacy completions face shares OpenAI's usage object
    assert orjson.loads(legacy.completion_json(task, _done(REASONED)))["usage"][
        "completion_tokens_details"
    ] == {"reasoning_tokens": 64}
    # not counted apart: no details, rather than a 0 that says the model did not reason
    assert (
        "completion_tokens_details"
        not in orjson.loads(completions.completion_json(task, _done(UNCOUNTED)))["usage"]
    )
    counted_none = Usage(prompt_tokens=12, completion_tokens=5, reasoning_tokens=0)
    assert orjson.loads(completions.completion_json(task, _done(counted_none)))["usage"][
        "completion_tokens_details"
    ] == {"reasoning_tokens": 0}


async def test_the_responses_face_says_them_whole_and_in_response_completed() -> None:
    task = _responses_task()
    usage = orjson.loads(responses_render.response_json(task, _done(REASONED)))["usage"]
    assert (usage["output_tokens"], usage["output_tokens_details"], usage["total_tokens"]) == (
        80,
        {"reasoning_tokens": 64},
        92,
    )
    stream = responses_stream.stream_events(task, [_done(REASONED)], _nothing_more(), timeout_s=5)
    completed = next(e for e in _data([e async for e in stream]) if e["type"] == "response.completed")
    assert completed["response"]["usage"]["output_tokens_details"] == {"reasoning_tokens": 64}
    # the field is required there: 0 when the provider did not count them apart
    plain = orjson.loads(responses_render.response_json(task, _done(UNCOUNTED)))["usage"]
    assert plain["output_tokens_details"] == {"reasoning_tokens": 0} and plain["output_tokens"] == 80


async def test_the_gemini_face_counts_thoughts_apart_from_the_candidates() -> None:
    """As Gemini counts them: the total is prompt + candidates + thoughts, so no token is in two counts."""
    whole = orjson.loads(gemini_render.response_json(_chat_task(), _done(REASONED), thoughts=False))
    assert whole["usageMetadata"] == {
        "promptTokenCount": 12,
        "candidatesTokenCount": 16,
        "thoughtsTokenCount": 64,
        "totalTokenCount": 92,
    }
    stream = gemini_render.stream_events(
        _chat_task(),
        [_done(REASONED)],
        _nothing_more(),
        timeout_s=5,
        thoughts=False,
        sse=True,
        request_id="r",
    )
    assert _data([e async for e in stream])[-1]["usageMetadata"] == whole["usageMetadata"]
    # no thoughts, or none counted apart: Gemini leaves the field out, the candidates hold every token
    for usage in (UNCOUNTED, Usage(prompt_tokens=12, completion_tokens=80, reasoning_tokens=0)):
        shown = orjson.loads(gemini_render.response_json(_chat_task(), _done(usage), thoughts=False))
        assert shown["usageMetadata"] == {
            "promptTokenCount": 12,
            "candidatesTokenCount": 80,
            "totalTokenCount": 92,
        }


def test_anthropics_face_and_the_task_api() -> None:
    """Anthropic's usage has no such field: its output tokens are all of them. The task API keeps it."""
    message = orjson.loads(messages_render.message_json(_chat_task(), _done(REASONED)))
    assert message["usage"] == {"input_tokens": 12, "output_tokens": 80}
    now = datetime.now(UTC)
    queued = TaskState(
        id="t1", tenant_id="acme", status="queued", model="auto", created_at=now, updated_at=now
    )
    result = with_outcome(queued, _done(REASONED)).result
    assert result is not None and (result.usage.completion_tokens, result.usage.reasoning_tokens) == (80, 64)
    unknown = with_outcome(queued, _done(UNCOUNTED)).result
    assert unknown is not None and unknown.usage.reasoning_tokens is None


def test_an_event_without_the_count_is_valid_and_unknown_stays_off_the_bus() -> None:
    """A v1 event from before the field reads as not counted; an unknown count is not put on the wire."""
    old = _done(UNCOUNTED).model_dump(mode="json")
    del old["usage"]["reasoning_tokens"]
    assert TaskCompleted.model_validate(old).usage.reasoning_tokens is None
    assert "reasoning_tokens" not in _wire(_done(UNCOUNTED))["usage"]
    assert _wire(_done(REASONED))["usage"]["reasoning_tokens"] == 64


def _wire(event: TaskCompleted) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(encode(event, source="test")[1])["data"]
    return data
