"""Tool calls streamed in pieces reach the chat face's clients as OpenAI streams them (`delta.tool_calls`
by index: id, type and name first, then argument pieces), once: the answer's end does not send them again.
The Anthropic face streams them its own way (test_messages_tool_stream.py), the Responses face in its
events (test_responses_tool_stream.py); the legacy face sends calls whole from the answer's end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from switchyard.common.events import TaskCompleted, TaskFailed, ToolCall
from switchyard.common.events.tasks import FunctionCall
from switchyard.common.streaming import Chunk, ToolCallPiece
from switchyard.gateway import completions, messages, messages_render
from switchyard.gateway.outcomes import open_stream
from switchyard.gateway.tenants import Principal
from tests.unit.gateway.streams import calls_answer, items, sse_data

pytestmark = pytest.mark.unit

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
CALL = ToolCall(id="call_a", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}'))
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
PIECES = [
    Chunk(seq=0, tool_call=ToolCallPiece(index=0, id="call_a", name="get_weather"), model="oai/tool-call"),
    Chunk(seq=1, tool_call=ToolCallPiece(index=0, arguments='{"city"')),
    Chunk(seq=2, tool_call=ToolCallPiece(index=0, arguments=': "Oslo"}')),
]


def _done() -> TaskCompleted:
    return calls_answer(CALL)


async def test_the_chat_face_streams_a_calls_pieces_once() -> None:
    body = {"model": "oai/tool-call", "messages": [{"role": "user", "content": "Weather?"}], "tools": [TOOL]}
    parsed = completions.parse_request(orjson.dumps({**body, "stream": True}), max_prompt_chars=1_000)
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    events = [
        e
        async for e in completions.stream_events(
            task, PIECES[:1], items(*PIECES[1:], _done()), timeout_s=5, include_usage=False
        )
    ]
    choices = [c for b in sse_data(events) for c in b["choices"]]
    calls = [t for c in choices for t in c["delta"].get("tool_calls") or []]
    assert calls == [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"city"'}},
        {"index": 0, "function": {"arguments": ': "Oslo"}'}},
    ]
    assert choices[0]["delta"]["role"] == "assistant" and choices[0]["delta"]["content"] is None
    assert [c["finish_reason"] for c in choices] == [None, None, None, "tool_calls"]


async def test_a_calls_first_piece_is_output_that_opens_the_stream() -> None:
    """The HTTP response starts at the first piece, as at the first text, not at the answer's end."""

    class Client:
        def stream(self, *_: Any, **__: Any) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
            return items(*PIECES, _done())

    head, rest = await open_stream(Client(), None, timeout_s=5)  # type: ignore[arg-type]
    assert head == PIECES[:1]
    await rest.aclose()  # type: ignore[attr-defined]


async def test_the_anthropic_face_streams_the_pieces_as_input_json_deltas() -> None:
    body = {"model": "oai/tool-call", "max_tokens": 50, "messages": [{"role": "user", "content": "Weather?"}]}
    tool = {"name": "get_weather", "input_schema": {"type": "object"}}
    parsed = messages.parse_request(
        orjson.dumps({**body, "tools": [tool], "stream": True}), max_prompt_chars=1_000
    )
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    events = [
        e
        async for e in messages_render.stream_events(
            task, PIECES[:1], items(*PIECES[1:], _done()), timeout_s=5
        )
    ]
    data = sse_data(events)
    assert [d["delta"]["partial_json"] for d in data if d["type"] == "content_block_delta"] == [
        '{"city"',
        ': "Oslo"}',
    ]
    assert [d["content_block"]["id"] for d in data if d["type"] == "content_block_start"] == ["call_a"]


async def test_one_of_several_answers_sends_its_streamed_calls_once_at_its_end() -> None:
    body = {"model": "oai/tool-call", "messages": [{"role": "user", "content": "Weather?"}], "tools": [TOOL]}
    parsed = completions.parse_request(orjson.dumps({**body, "stream": True, "n": 2}), max_prompt_chars=1_000)
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    chunks = [
        Chunk(seq=0, delta="Oslo.", model="oai/tool-call"),
        *(c.model_copy(update={"seq": c.seq + 1, "choice": 1, "model": None}) for c in PIECES),
        Chunk(seq=4, finish_reason="tool_calls", choice=1, tool_calls=[CALL]),
    ]
    done = _done().model_copy(
        update={"content": "Oslo.", "finish_reason": "stop", "tool_calls": None, "other_choices": []}
    )
    events = [
        e
        async for e in completions.stream_events(
            task, chunks[:1], items(*chunks[1:], done), timeout_s=5, include_usage=False
        )
    ]
    choices = [c for b in sse_data(events) for c in b["choices"]]
    calls = [t for c in choices if c["index"] == 1 for t in c["delta"].get("tool_calls") or []]
    assert "".join(t["function"]["arguments"] for t in calls) == '{"city": "Oslo"}'  # once
    assert [c["finish_reason"] for c in choices if c["index"] == 1][-1] == "tool_calls"


async def test_the_chat_face_streams_calls_interleaved_by_index_one_after_another() -> None:
    """A server interleaves two calls' pieces: the second's wait for the first's arguments to be whole
    (the OpenAI SDK's chat stream takes a call as done when the next begins, and parses a strict tool's
    arguments then: JSONDecodeError on a part), and go at the next piece after; one still waiting at the
    answer's end goes then, before the finish reason."""
    body = {"model": "oai/tool-call", "messages": [{"role": "user", "content": "Weather?"}], "tools": [TOOL]}
    parsed = completions.parse_request(orjson.dumps({**body, "stream": True}), max_prompt_chars=1_000)
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    order = [
        (0, "call_a", '{"city"'),
        (1, "call_b", '{"ci'),
        (0, None, ': "Oslo"}'),
        (1, None, 'ty": "Rome"}'),
    ]
    order += [(2, "call_c", "{"), (1, None, " "), (3, "call_d", "{}"), (2, None, "}")]
    chunks = [
        Chunk(seq=n, tool_call=ToolCallPiece(index=i, id=call, name=call and "get_weather", arguments=a))
        for n, (i, call, a) in enumerate(order)
    ]
    events = [
        e
        async for e in completions.stream_events(
            task, chunks[:1], items(*chunks[1:], _done()), timeout_s=5, include_usage=False
        )
    ]
    choices = [c for b in sse_data(events) for c in b["choices"]]
    pieces = [
        (t["index"], t["function"]["arguments"]) for c in choices for t in c["delta"].get("tool_calls") or []
    ]
    assert pieces == [
        (0, '{"city"'),
        (0, ': "Oslo"}'),
        (1, '{"ci'),  # at the next piece after the first call's arguments were whole
        (1, 'ty": "Rome"}'),
        (2, "{"),
        (1, " "),  # a late piece of a call before the open one: as it came
        (2, "}"),
        (3, "{}"),  # waiting at the answer's end: then, before the finish reason
    ]
    assert choices[-1]["finish_reason"] == "tool_calls"
