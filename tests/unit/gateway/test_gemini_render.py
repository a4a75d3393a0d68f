"""The Gemini face's answers in Gemini's shape: a response whole (thoughts shown or not, a cut answer), a
stream as server-sent events and as a JSON array (a break in it too), and a refusal (finishReason SAFETY)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from google.genai import types

from switchyard.common.events import (
    ChatRequest,
    FunctionCall,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    ThinkingBlock,
    ToolCall,
    Usage,
)
from switchyard.common.streaming import Chunk
from switchyard.gateway.gemini import render


def _task() -> TaskSubmitted:
    return TaskSubmitted(
        task_id="t1",
        tenant_id="org",
        request=ChatRequest(messages=[{"role": "user", "content": "hi"}]),  # type: ignore[list-item]
        submitted_at=datetime.now(UTC),
    )


def _done(**fields: Any) -> TaskCompleted:
    return TaskCompleted(
        task_id="t1",
        tenant_id="org",
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="fast",
        content=fields.pop("content", ""),
        finish_reason=fields.pop("finish_reason", "stop"),
        usage=Usage(prompt_tokens=10, completion_tokens=4, cache_read_tokens=6),
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
        **fields,
    )


def _thought_and_call(content: str, arguments: str) -> TaskCompleted:
    """A thinking model's answer that calls `ls`."""
    call = ToolCall(id="call_1", function=FunctionCall(name="ls", arguments=arguments))
    return _done(
        content=content,
        finish_reason="tool_calls",
        tool_calls=[call],
        thinking=[ThinkingBlock(thinking="I should list.", signature="sig")],
    )


def test_an_answer_in_geminis_shape() -> None:
    done = _thought_and_call("Looking.", '{"path": "."}')
    body = orjson.loads(render.response_json(_task(), done, thoughts=True))
    assert body == {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "I should list.", "thought": True},
                        {"text": "Looking."},
                        {"functionCall": {"id": "call_1", "name": "ls", "args": {"path": "."}}},
                    ],
                    "role": "model",
                },
                "index": 0,
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 4,
            "totalTokenCount": 14,
            "cachedContentTokenCount": 6,
        },
        "modelVersion": "openai/gpt-4o-mini",
        "responseId": "t1",
    }
    hidden = orjson.loads(render.response_json(_task(), done, thoughts=False))
    assert all("thought" not in part for part in hidden["candidates"][0]["content"]["parts"])
    cut = orjson.loads(
        render.response_json(_task(), _done(content="Par", finish_reason="length"), thoughts=False)
    )
    assert cut["candidates"][0]["finishReason"] == "MAX_TOKENS"


async def _stream(items: list[Any], *, sse: bool) -> bytes:
    async def rest() -> Any:
        for item in items:
            yield item

    out = render.stream_events(_task(), [], rest(), timeout_s=1, thoughts=True, sse=sse, request_id="req_1")
    return b"".join([piece async for piece in out])


async def test_a_stream_as_server_sent_events_and_as_a_json_array() -> None:
    items = [
        Chunk(seq=0, thinking="hmm", model="openai/gpt-4o-mini"),
        Chunk(seq=1, delta="Pa"),
        Chunk(seq=2, delta="ris"),
        _done(content="Paris"),
    ]
    raw = await _stream(items, sse=True)
    events = [orjson.loads(line.removeprefix(b"data: ")) for line in raw.split(b"\r\n\r\n") if line]
    parts = [e["candidates"][0]["content"]["parts"] for e in events]
    assert parts == [[{"text": "hmm", "thought": True}], [{"text": "Pa"}], [{"text": "ris"}], [{"text": ""}]]
    assert (
        events[-1]["candidates"][0]["finishReason"] == "STOP"
        and events[-1]["usageMetadata"]["totalTokenCount"] == 14
    )
    assert all("usageMetadata" not in e for e in events[:-1])  # no prompt count came: none before the end
    array = orjson.loads(await _stream(items, sse=False))
    assert array == events

    failed = TaskFailed(
        task_id="t1",
        tenant_id="org",
        error_code="provider_network",
        error_message="gone",
        failed_at=datetime.now(UTC),
    )
    broken = orjson.loads(await _stream([Chunk(seq=0, delta="Pa"), failed], sse=False))
    # as the same failure answered before the stream: 502, UNAVAILABLE (it was 500 INTERNAL for every one)
    assert (broken[-1]["error"]["code"], broken[-1]["error"]["status"]) == (502, "UNAVAILABLE")
    assert broken[-1]["error"]["message"] == "gone"
    assert broken[-1]["error"]["details"][0]["reason"] == "PROVIDER_NETWORK"
    # the request id, as an error response's ErrorInfo carries it
    assert broken[-1]["error"]["details"][0]["metadata"] == {
        "code": "provider_network",
        "type": "api_error",
        "request_id": "req_1",
    }


async def test_streamed_thoughts_are_not_sent_again_with_a_function_call() -> None:
    # a thinking model that answers with a function call alone (no text): its thoughts went out as they came
    done = _thought_and_call("", "{}")
    items = [
        Chunk(seq=0, thinking="I should list.", model="openai/gpt-4o-mini"),
        Chunk(seq=1, signature="sig"),
        Chunk(seq=2, done=True, finish_reason="tool_calls"),
        done,
    ]
    raw = await _stream(items, sse=True)
    events = [orjson.loads(line.removeprefix(b"data: ")) for line in raw.split(b"\r\n\r\n") if line]
    parts = [e["candidates"][0]["content"]["parts"] for e in events]
    assert parts == [
        [{"text": "I should list.", "thought": True}],
        [{"functionCall": {"id": "call_1", "name": "ls", "args": {}}}],
    ]


async def test_a_refusal_is_said_as_gemini_ends_an_answer_it_will_not_give() -> None:
    """OpenAI's `refusal` (structured outputs a model will not give) has no field in Gemini's API: its words
    are the text, and the candidate ends SAFETY, whole and streamed."""
    refused = _done(content="", refusal="I can't help with that.")
    body = orjson.loads(render.response_json(_task(), refused, thoughts=False))
    candidate = body["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": "I can't help with that."}]
    assert candidate["finishReason"] == "SAFETY"
    events = orjson.loads(await _stream([refused], sse=False))
    assert events[-1]["candidates"][0]["content"]["parts"] == [{"text": "I can't help with that."}]
    assert events[-1]["candidates"][0]["finishReason"] == "SAFETY"


async def test_every_streamed_chunk_carries_the_prompts_usage_as_gemini_sends_it() -> None:
    """Gemini sends `usageMetadata` on each streamed chunk: the prompt's count (and the total, so far the
    same) on each partial response, the candidates' count on the last (seen on the wire:
    google-gemini-php/client#72). It was on the last only."""
    prompt = Usage(prompt_tokens=10, completion_tokens=0, cache_read_tokens=6)
    items = [
        Chunk(seq=0, model="openai/gpt-4o-mini"),  # names the model: no output, no usage yet
        Chunk(seq=1, thinking="hmm", usage=prompt),
        Chunk(seq=2, delta="Pa"),
        Chunk(seq=3, delta="ris"),
        _done(content="Paris"),
    ]
    raw = await _stream(items, sse=True)
    events = [orjson.loads(line.removeprefix(b"data: ")) for line in raw.split(b"\r\n\r\n") if line]
    partial = {"promptTokenCount": 10, "totalTokenCount": 10, "cachedContentTokenCount": 6}
    assert [e["usageMetadata"] for e in events[:-1]] == [partial] * 3
    assert events[-1]["usageMetadata"] == {
        "promptTokenCount": 10,
        "candidatesTokenCount": 4,
        "totalTokenCount": 14,
        "cachedContentTokenCount": 6,
    }
    # google-genai reads each chunk's usage as its GenerateContentResponse's usage_metadata
    first = types.GenerateContentResponse.model_validate(events[0])
    assert first.usage_metadata is not None and first.usage_metadata.prompt_token_count == 10
