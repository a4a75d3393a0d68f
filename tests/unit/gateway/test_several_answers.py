"""Several answers to one request (`n`): each face returns them all by their index, plain or streamed;
budgets and token limits reserve each one's output; output guardrails screen each one; the cache never
serves nor keeps them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from switchyard.common.events import ChatRequest, Choice, TaskCompleted, TaskFailed, ToolCall, Usage
from switchyard.common.events.tasks import FunctionCall
from switchyard.common.policy import load_policy
from switchyard.common.streaming import Chunk
from switchyard.gateway import completions, legacy
from switchyard.gateway.budgets import pricing
from switchyard.gateway.cache.models import exact_key
from switchyard.gateway.guardrails.models import GuardrailConfig
from switchyard.gateway.guardrails.service import GuardrailPolicy, Guardrails
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
CALL = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}'))
OTHERS = [
    Choice(content="Oslo, I think.", finish_reason="stop"),
    Choice(content="", finish_reason="tool_calls", tool_calls=[CALL]),
]


def _task(face: Any, **body: Any) -> Any:
    request = {"model": "auto", "n": 3, **body}
    if face is legacy:
        request["prompt"] = "Name a city."
    else:
        request["messages"] = [{"role": "user", "content": "Name a city."}]
    parsed = face.parse_request(orjson.dumps(request), max_prompt_chars=1_000)
    return completions.build_task(parsed, PRINCIPAL, priority=None)


def _done(**kw: Any) -> TaskCompleted:
    fields: dict[str, Any] = {
        "task_id": "t1",
        "tenant_id": "acme",
        "model": "openai/gpt-6-luna",
        "provider": "openai",
        "tier": "fast",
        "content": "Paris.",
        "finish_reason": "stop",
        "usage": Usage(prompt_tokens=10, completion_tokens=9),
        "attempts": 1,
        "latency_ms": 5.0,
        "completed_at": "2026-12-05T00:00:00Z",
        "other_choices": OTHERS,
    }
    return TaskCompleted(**{**fields, **kw})


async def _items(*items: Chunk | TaskCompleted) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    for item in items:
        yield item


def _sse(events: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        for line in event.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                out.append(orjson.loads(line[6:]))
    return out


def test_the_request_carries_n_and_refuses_more_than_eight() -> None:
    assert _task(completions).request.n == 3 and _task(legacy).request.n == 3
    assert (
        completions.build_task(
            completions.parse_request(
                orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "x"}]}),
                max_prompt_chars=100,
            ),
            PRINCIPAL,
            priority=None,
        ).request.n
        == 1
    )


def test_a_chat_completion_lists_every_answer_by_its_index() -> None:
    body = orjson.loads(completions.completion_json(_task(completions), _done()))
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in body["choices"]] == ["Paris.", "Oslo, I think.", None]
    assert [c["finish_reason"] for c in body["choices"]] == ["stop", "stop", "tool_calls"]
    assert body["choices"][2]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["usage"]["completion_tokens"] == 9  # the whole call's


async def test_a_stream_sends_the_first_answer_then_each_other_whole_by_its_index() -> None:
    task = _task(completions, stream=True)
    head: list[Chunk | TaskCompleted] = [Chunk(seq=0, delta="Paris.", model="openai/gpt-6-luna")]
    events = [
        e
        async for e in completions.stream_events(task, head, _items(_done()), timeout_s=5, include_usage=True)
    ]
    assert events[-1] == b"data: [DONE]\n\n"
    bodies = _sse(events)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    calls: dict[int, list[Any]] = {}
    for body in bodies:
        for choice in body["choices"]:
            i = choice["index"]
            texts[i] = texts.get(i, "") + (choice["delta"].get("content") or "")
            calls[i] = calls.get(i, []) + choice["delta"].get("tool_calls", [])
            if choice["finish_reason"]:
                finishes[i] = choice["finish_reason"]
    assert texts == {0: "Paris.", 1: "Oslo, I think.", 2: ""}
    assert finishes == {0: "stop", 1: "stop", 2: "tool_calls"}
    assert [c["function"]["name"] for c in calls[2]] == ["get_weather"]
    assert bodies[-1]["choices"] == [] and bodies[-1]["usage"]["completion_tokens"] == 9  # usage last


async def test_the_legacy_face_lists_and_streams_every_answer() -> None:
    done = _done(other_choices=[Choice(content="Oslo.", finish_reason="length")])
    body = orjson.loads(legacy.completion_json(_task(legacy), done))
    assert [(c["index"], c["text"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "Paris.", "stop"),
        (1, "Oslo.", "length"),
    ]
    task = _task(legacy, stream=True)
    head: list[Chunk | TaskCompleted] = [Chunk(seq=0, delta="Paris.", model="openai/gpt-6-luna")]
    events = [
        e async for e in legacy.stream_events(task, head, _items(done), timeout_s=5, include_usage=False)
    ]
    choices = [c for b in _sse(events) for c in b["choices"]]
    assert "".join(c["text"] for c in choices if c["index"] == 1) == "Oslo."
    assert [c["finish_reason"] for c in choices if c["finish_reason"]] == ["stop", "length"]
    assert events[-1] == b"data: [DONE]\n\n"


def test_budgets_and_token_limits_reserve_each_answers_output() -> None:
    policy = load_policy()
    one = ChatRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": "x"}]})
    three = one.model_copy(update={"n": 3})
    assert pricing.output_tokens(one.model_copy(update={"max_tokens": 100}), default_max_tokens=50) == 100
    assert pricing.output_tokens(three.model_copy(update={"max_tokens": 100}), default_max_tokens=50) == 300
    assert pricing.output_tokens(three, default_max_tokens=50) == 150
    providers = {"openai", "anthropic", "gemini", "local"}
    worst_one = pricing.worst_case_micro(policy, one, providers=providers, default_max_tokens=1000)
    worst_three = pricing.worst_case_micro(policy, three, providers=providers, default_max_tokens=1000)
    assert worst_three > 2 * worst_one


def test_cache_keys_are_unchanged_by_n() -> None:
    """`n` is left out of the key: a request for one answer keeps the key it had before `n` existed
    (and requests for several never reach the cache)."""
    request = ChatRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": "x"}]})
    assert "n" in request.model_dump()
    assert exact_key("acme", request) == exact_key("acme", request.model_copy(update={"n": 2}))
    # the key the code before `n` gave this request (computed there): stored answers are still found
    assert exact_key("acme", request) == "1ec29d1f379142132ec84171b9f47450300fbf0bbfe978acb09e71f506409873"


async def test_output_guardrails_screen_every_answer() -> None:
    guard = Guardrails(GuardrailPolicy(GuardrailConfig(pii="redact", pii_output=True)), events=None)
    leaky = [Choice(content="Mail bob@example.org.", finish_reason="stop"), OTHERS[0]]
    out = await guard.screen_output(
        _done(other_choices=leaky), principal=PRINCIPAL, request_id="r1", endpoint="/v1/chat/completions"
    )
    assert [c.content for c in out.other_choices] == ["Mail [REDACTED_EMAIL].", "Oslo, I think."]
    assert out.content == "Paris."
