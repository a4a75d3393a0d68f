"""A model's refusal (the result's `refusal`, its `content` empty) reaches each face in its own words: the
chat face's `message.refusal` (content null) and, streamed, a `delta.refusal` (the shapes LangChain,
pydantic-ai, instructor and the OpenAI SDK's `parse` read), the Responses face's `refusal` content part,
the Anthropic face's text with `stop_reason: refusal`. It is screened by the output guardrails as text is,
and never cached."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchyard.common.events import Choice, TaskCompleted, Usage
from switchyard.common.streaming import Chunk
from switchyard.gateway import (
    completions,
    messages,
    messages_render,
    responses,
    responses_render,
    responses_stream,
)
from switchyard.gateway.cache.models import storable
from switchyard.gateway.guardrails.models import GuardrailConfig
from switchyard.gateway.guardrails.service import GuardrailPolicy, Guardrails
from switchyard.gateway.tenants import Principal
from tests.unit.gateway.streams import items, sse_data

pytestmark = pytest.mark.unit

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
REFUSAL = "I'm sorry, I can't help with that."
SCHEMA = {
    "name": "city",
    "strict": True,
    "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
}
ASK = [{"role": "user", "content": "Name a city."}]


def _chat_task(**body: Any) -> Any:
    request = {"model": "openai/gpt-4o-mini", "messages": ASK, **body}
    request["response_format"] = {"type": "json_schema", "json_schema": SCHEMA}
    parsed = completions.parse_request(orjson.dumps(request), max_prompt_chars=1_000)
    return completions.build_task(parsed, PRINCIPAL, priority=None)


def _done(**kw: Any) -> TaskCompleted:
    fields: dict[str, Any] = {
        "task_id": "t1",
        "tenant_id": "acme",
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "tier": "fast",
        "content": "",
        "refusal": REFUSAL,
        "finish_reason": "stop",
        "usage": Usage(prompt_tokens=10, completion_tokens=9),
        "attempts": 1,
        "latency_ms": 5.0,
        "completed_at": "2026-12-05T00:00:00Z",
    }
    return TaskCompleted(**{**fields, **kw})


def test_the_chat_face_answers_a_refusal_as_openai_does() -> None:
    done = _done(other_choices=[Choice(content='{"name": "Oslo"}', finish_reason="stop")])
    body = orjson.loads(completions.completion_json(_chat_task(n=2), done))
    first, second = (c["message"] for c in body["choices"])
    assert (first["content"], first["refusal"]) == (None, REFUSAL)
    assert second["content"] == '{"name": "Oslo"}' and "refusal" not in second


async def test_a_streamed_refusal_is_a_refusal_delta_before_the_finish_reason() -> None:
    task = _chat_task(stream=True)
    events = [
        e async for e in completions.stream_events(task, [], items(_done()), timeout_s=5, include_usage=True)
    ]
    choices = [c for b in sse_data(events) for c in b["choices"]]
    assert [(c["delta"].get("refusal"), c["finish_reason"]) for c in choices] == [
        (None, None),  # the role
        (REFUSAL, None),
        (None, "stop"),
    ]
    assert not any(c["delta"].get("content") for c in choices)


async def test_one_of_several_streamed_answers_refused_says_so_at_its_end() -> None:
    task = _chat_task(stream=True, n=2)
    chunks = [
        Chunk(seq=0, delta='{"name": "Oslo"}', model="openai/gpt-4o-mini"),
        Chunk(seq=1, finish_reason="stop", choice=1, refusal=REFUSAL),
    ]
    done = _done(
        content='{"name": "Oslo"}',
        refusal=None,
        other_choices=[Choice(content="", finish_reason="stop", refusal=REFUSAL)],
    )
    events = [
        e
        async for e in completions.stream_events(
            task, chunks[:1], items(*chunks[1:], done), timeout_s=5, include_usage=False
        )
    ]
    refused = [
        (c["index"], c["delta"]["refusal"])
        for b in sse_data(events)
        for c in b["choices"]
        if c["delta"].get("refusal")
    ]
    assert refused == [(1, REFUSAL)]  # once, from its end chunk


def _responses_task(stream: bool = False) -> Any:
    body = {"model": "openai/gpt-4o-mini", "input": "Name a city.", "stream": stream}
    body["text"] = {"format": {"type": "json_schema", **SCHEMA}}
    parsed = responses.parse_request(orjson.dumps(body), max_prompt_chars=1_000)
    return completions.build_task(parsed, PRINCIPAL, priority=None)


def test_the_responses_face_answers_a_refusal_part() -> None:
    body = orjson.loads(responses_render.response_json(_responses_task(), _done()))
    (item,) = body["output"]
    assert item["type"] == "message" and item["content"] == [{"type": "refusal", "refusal": REFUSAL}]


async def test_the_responses_face_streams_a_refusal_part() -> None:
    task = _responses_task(stream=True)
    events = [e async for e in responses_stream.stream_events(task, [], items(_done()), timeout_s=5)]
    data = sse_data(events)
    kinds = [d["type"] for d in data]
    assert "response.output_text.delta" not in kinds
    assert [d["delta"] for d in data if d["type"] == "response.refusal.delta"] == [REFUSAL]
    assert [d["refusal"] for d in data if d["type"] == "response.refusal.done"] == [REFUSAL]
    completed = data[-1]["response"]
    assert completed["output"][0]["content"] == [{"type": "refusal", "refusal": REFUSAL}]


def _messages_task(stream: bool = False) -> Any:
    body = {"model": "openai/gpt-4o-mini", "max_tokens": 50, "messages": ASK, "stream": stream}
    body["output_config"] = {"format": {"type": "json_schema", "schema": SCHEMA["schema"]}}
    parsed = messages.parse_request(orjson.dumps(body), max_prompt_chars=1_000)
    return completions.build_task(parsed, PRINCIPAL, priority=None)


async def test_the_anthropic_face_says_the_refusal_with_its_stop_reason() -> None:
    body = orjson.loads(messages_render.message_json(_messages_task(), _done()))
    assert body["content"] == [{"type": "text", "text": REFUSAL}] and body["stop_reason"] == "refusal"
    events = [
        e async for e in messages_render.stream_events(_messages_task(True), [], items(_done()), timeout_s=5)
    ]
    data = sse_data(events)
    assert [d["delta"]["text"] for d in data if d["type"] == "content_block_delta"] == [REFUSAL]
    assert [d["delta"]["stop_reason"] for d in data if d["type"] == "message_delta"] == ["refusal"]


async def test_output_guardrails_screen_a_refusal_and_the_cache_keeps_none() -> None:
    config = GuardrailConfig(injection="off", pii="redact", pii_output=True)
    guardrails = Guardrails(GuardrailPolicy(config), events=None)
    said = "I can't share what bob@example.com wrote."
    screened = await guardrails.screen_output(
        _done(refusal=said), principal=PRINCIPAL, request_id="r", endpoint="e"
    )
    assert screened.refusal is not None and "bob@example.com" not in screened.refusal
    assert not storable(content="", finish_reason="stop", tool_calls=None, refusal=REFUSAL)
    assert not storable(content="{}", finish_reason="stop", tool_calls=None, refusal=REFUSAL)
