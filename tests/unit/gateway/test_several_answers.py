"""Several answers to one request (`n`): each face returns them all by their index, plain or streamed (as
they come, interleaved);
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
from switchyard.common.streaming import Chunk, decode_chunk, encode_chunk
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


def _by_index(bodies: list[dict[str, Any]], field: str) -> dict[int, Any]:
    """Each choice's `field` accumulated by its index, as OpenAI's clients accumulate a stream."""
    out: dict[int, Any] = {}
    for body in bodies:
        for choice in body["choices"]:
            value = (choice.get("delta") or {}).get(field) if field != "text" else choice["text"]
            out[choice["index"]] = out.get(choice["index"], "") + (value or "")
    return out


# Three answers as the executor streams them: interleaved as generated, the second's chunks under
# `choice` 1; the third (only a tool call) streams nothing.
INTERLEAVED = [
    Chunk(seq=0, delta="Par", model="openai/gpt-6-luna"),
    Chunk(seq=1, delta="Oslo, ", choice=1),
    Chunk(seq=2, delta="is.", choice=0),
    Chunk(seq=3, delta="I think.", choice=1),
]


def test_a_chunk_names_its_answer_only_beyond_the_first() -> None:
    assert encode_chunk(Chunk(seq=0, delta="Par")) == b'{"seq":0,"delta":"Par"}'  # as before, byte for byte
    assert encode_chunk(INTERLEAVED[1]) == b'{"seq":1,"delta":"Oslo, ","choice":1}'
    assert decode_chunk(encode_chunk(INTERLEAVED[1])).choice == 1


async def test_a_stream_sends_every_answer_as_it_comes_each_under_its_index() -> None:
    """Interleaved chunks become OpenAI's chunks in their order, each with its answer's `index` and the
    role on each answer's first; at the result only what no chunk carried (the third answer whole, its
    tool calls), each answer's finish reason, then the usage."""
    task = _task(completions, stream=True)
    head: list[Chunk | TaskCompleted] = [INTERLEAVED[0]]
    done = _done(
        content="Paris.", other_choices=[Choice(content="Oslo, I think.", finish_reason="length"), OTHERS[1]]
    )
    rest = _items(*INTERLEAVED[1:], done)
    events = [e async for e in completions.stream_events(task, head, rest, timeout_s=5, include_usage=True)]
    assert events[-1] == b"data: [DONE]\n\n"
    bodies = _sse(events)
    choices = [b["choices"][0] for b in bodies[:-1]]
    assert [(c["index"], c["delta"].get("content")) for c in choices[:4]] == [
        (0, "Par"),
        (1, "Oslo, "),
        (0, "is."),
        (1, "I think."),
    ]
    roles = [c["index"] for c in choices if c["delta"].get("role") == "assistant"]
    assert roles == [0, 1, 2]  # once each, on its first delta
    assert _by_index(bodies, "content") == {0: "Paris.", 1: "Oslo, I think.", 2: ""}
    finishes = {c["index"]: c["finish_reason"] for c in choices if c["finish_reason"]}
    assert finishes == {0: "stop", 1: "length", 2: "tool_calls"}
    calls = [t for c in choices for t in c["delta"].get("tool_calls", [])]
    assert [(t["index"], t["function"]["name"]) for t in calls] == [(0, "get_weather")]
    assert all(c["index"] == 2 for c in choices if c["delta"].get("tool_calls"))
    assert bodies[-1]["choices"] == [] and bodies[-1]["usage"]["completion_tokens"] == 9  # usage last


async def test_each_answers_reasoning_streams_under_its_index_and_ends_as_its_own_block() -> None:
    """Two answers' thinking interleaved: each block's end carries that answer's reasoning only, and the
    text after it is not marked as the answer's first delta again."""
    task = _task(completions, stream=True)
    chunks = [
        Chunk(seq=0, thinking="Paris is ", model="openai/gpt-6-luna"),
        Chunk(seq=1, thinking="Oslo? ", choice=1),
        Chunk(seq=2, thinking="the capital.", signature=""),
        Chunk(seq=3, signature="", choice=1),
        Chunk(seq=4, delta="Oslo.", choice=1),
        Chunk(seq=5, delta="Paris."),
    ]
    done = _done(other_choices=[Choice(content="Oslo.", finish_reason="stop")])
    events = [
        e
        async for e in completions.stream_events(
            task, chunks[:1], _items(*chunks[1:], done), timeout_s=5, include_usage=False
        )
    ]
    choices = [c for b in _sse(events) for c in b["choices"]]
    blocks = {
        c["index"]: c["delta"]["thinking_blocks"][0]["thinking"]
        for c in choices
        if "thinking_blocks" in c["delta"]
    }
    assert blocks == {0: "Paris is the capital.", 1: "Oslo? "}
    assert [c["index"] for c in choices if c["delta"].get("role")] == [0, 1]
    assert _by_index(_sse(events), "content") == {0: "Paris.", 1: "Oslo."}


async def test_a_stream_of_answers_made_whole_sends_each_whole_by_its_index() -> None:
    """A result no chunk carried (an answer sent whole: an output guardrail's, a replay): every answer
    whole, by its index, then the usage."""
    task = _task(completions, stream=True)
    events = [
        e async for e in completions.stream_events(task, [_done()], _items(), timeout_s=5, include_usage=True)
    ]
    bodies = _sse(events)
    assert _by_index(bodies, "content") == {0: "Paris.", 1: "Oslo, I think.", 2: ""}
    assert [c["index"] for b in bodies for c in b["choices"] if c["delta"].get("role")] == [0, 1, 2]
    assert bodies[-1]["choices"] == [] and events[-1] == b"data: [DONE]\n\n"


async def test_the_legacy_face_lists_and_streams_every_answer() -> None:
    done = _done(content="Paris.", other_choices=[Choice(content="Oslo, I think.", finish_reason="length")])
    body = orjson.loads(legacy.completion_json(_task(legacy), done))
    assert [(c["index"], c["text"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "Paris.", "stop"),
        (1, "Oslo, I think.", "length"),
    ]
    task = _task(legacy, stream=True)
    events = [
        e
        async for e in legacy.stream_events(
            task, [INTERLEAVED[0]], _items(*INTERLEAVED[1:], done), timeout_s=5, include_usage=False
        )
    ]
    bodies = _sse(events)
    choices = [c for b in bodies for c in b["choices"]]
    assert [(c["index"], c["text"]) for c in choices[:4]] == [
        (0, "Par"),
        (1, "Oslo, "),
        (0, "is."),
        (1, "I think."),
    ]
    assert _by_index(bodies, "text") == {0: "Paris.", 1: "Oslo, I think."}  # nothing sent twice
    assert [(c["index"], c["finish_reason"]) for c in choices if c["finish_reason"]] == [
        (0, "stop"),
        (1, "length"),
    ]
    assert events[-1] == b"data: [DONE]\n\n"
    whole = [e async for e in legacy.stream_events(task, [done], _items(), timeout_s=5, include_usage=False)]
    assert _by_index(_sse(whole), "text") == {0: "Paris.", 1: "Oslo, I think."}


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


# Each answer's end chunk comes when it ended: the first's before the second's first text, the third (a
# tool call, no text) ends before it began.
ENDED = [
    Chunk(seq=0, delta="Paris.", model="openai/gpt-6-luna"),
    Chunk(seq=1, finish_reason="stop"),
    Chunk(seq=2, delta="Oslo", choice=1),
    Chunk(seq=3, finish_reason="tool_calls", choice=2, tool_calls=[CALL]),
    Chunk(seq=4, delta=", I think.", choice=1),
    Chunk(seq=5, finish_reason="length", choice=1),
    Chunk(seq=6, done=True, finish_reason="stop"),
]
ENDED_DONE = _done(other_choices=[Choice(content="Oslo, I think.", finish_reason="length"), OTHERS[1]])


def test_an_answers_end_chunk_carries_its_finish_reason_and_tool_calls_and_no_done() -> None:
    raw = encode_chunk(ENDED[3])
    assert raw.startswith(b'{"seq":3,"finish_reason":"tool_calls","choice":2,"tool_calls":[{"id":"call_1"')
    end = decode_chunk(raw)
    assert end.ends_answer() and end.tool_calls == [CALL]
    assert not decode_chunk(encode_chunk(ENDED[-1])).ends_answer()  # the stream's end
    assert encode_chunk(ENDED[1]) == b'{"seq":1,"finish_reason":"stop"}'


async def test_each_answers_finish_reason_and_tool_calls_go_out_when_it_ends_once() -> None:
    task = _task(completions, stream=True)
    events = [
        e
        async for e in completions.stream_events(
            task, ENDED[:1], _items(*ENDED[1:], ENDED_DONE), timeout_s=5, include_usage=True
        )
    ]
    bodies = _sse(events)
    shown = [
        (c["index"], c["delta"].get("content"), bool(c["delta"].get("tool_calls")), c["finish_reason"])
        for b in bodies
        for c in b["choices"]
    ]
    assert shown == [
        (0, "Paris.", False, None),
        (0, None, False, "stop"),  # before the second answer's first text
        (1, "Oslo", False, None),
        (2, None, False, None),  # the role, no text beside tool calls
        (2, None, True, None),
        (2, None, False, "tool_calls"),
        (1, ", I think.", False, None),
        (1, None, False, "length"),
    ]
    assert [c["index"] for b in bodies for c in b["choices"] if c["delta"].get("role")] == [0, 1, 2]
    assert bodies[-1]["usage"]["completion_tokens"] == 9 and events[-1] == b"data: [DONE]\n\n"


async def test_the_legacy_face_sends_each_answers_finish_reason_when_it_ends_once() -> None:
    task = _task(legacy, stream=True)
    events = [
        e
        async for e in legacy.stream_events(
            task, ENDED[:1], _items(*ENDED[1:], ENDED_DONE), timeout_s=5, include_usage=False
        )
    ]
    choices = [c for b in _sse(events) for c in b["choices"]]
    assert [(c["index"], c["text"], c["finish_reason"]) for c in choices] == [
        (0, "Paris.", None),
        (0, "", "stop"),
        (1, "Oslo", None),
        (2, "", "tool_calls"),
        (1, ", I think.", None),
        (1, "", "length"),
    ]
    assert events[-1] == b"data: [DONE]\n\n"
