"""A streamed tool call goes out in pieces as the provider streams it (its id and name first, then its
arguments), not whole at the answer's end: instructor's `create_partial` and pydantic-ai's streamed
output parse the arguments as they grow, and a long call (a file's contents) shows from its first
token."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest

from switchyard.common.events import ChatMessage
from switchyard.common.streaming import Chunk, ToolCallPiece, decode_chunk, encode_chunk
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.providers.anthropic import AnthropicProvider, AnthropicSettings
from switchyard.executor.providers.base import (
    OUTPUT,
    ProviderCall,
    Reply,
    StreamPart,
    ThinkingDelta,
    ToolCallDelta,
)
from switchyard.executor.providers.openai import OpenAIProvider
from switchyard.executor.providers.openai import responses as openai_responses
from switchyard.executor.providers.openai.wire import ToolCallDeltas
from tests.unit.executor.upstream import openai_streaming

pytestmark = pytest.mark.unit
CALL = ProviderCall(model="m", messages=(ChatMessage(role="user", content="Weather?"),))


def _chunk(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


async def _parts(provider: OpenAIProvider, call: ProviderCall = CALL) -> list[StreamPart]:
    try:
        return [part async for part in provider.stream(call)]
    finally:
        await provider.aclose()


async def test_tool_call_pieces_stream_as_they_come_and_the_reply_holds_the_calls_whole() -> None:
    first = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}
    second = {"index": 1, "id": "call_b", "type": "function", "function": {"name": "time", "arguments": ""}}
    parts = await _parts(
        openai_streaming(
            _chunk(role="assistant", content=None, reasoning_content="Two tools. "),
            _chunk(tool_calls=[first]),
            _chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city"'}}]),
            _chunk(tool_calls=[{"index": 0, "function": {"arguments": ': "Oslo"}'}}]),
            _chunk(tool_calls=[second]),
            _chunk(tool_calls=[{"index": 1, "function": {"arguments": "{}"}}]),
            _chunk(finish="tool_calls"),
            b"[DONE]",
        )
    )
    assert parts[:2] == [ThinkingDelta("Two tools. "), ThinkingDelta(signature="")]  # ended before the calls
    assert parts[2:5] == [  # a call's id and name come with its first arguments (the name is whole then)
        ToolCallDelta(0, '{"city"', id="call_a", name="weather"),
        ToolCallDelta(0, ': "Oslo"}'),
        ToolCallDelta(1, "{}", id="call_b", name="time"),
    ]
    assert all(isinstance(p, OUTPUT) for p in parts[:5])  # output: no failover once one went out
    final = parts[-1]
    assert isinstance(final, Reply) and [(c.id, c.function.arguments) for c in final.tool_calls] == [
        ("call_a", '{"city": "Oslo"}'),
        ("call_b", "{}"),
    ]


async def test_a_call_streamed_without_an_id_gets_the_one_its_whole_call_has() -> None:
    parts = await _parts(
        openai_streaming(
            _chunk(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": "{}"}}]),
            _chunk(finish="tool_calls"),
            b"[DONE]",
        )
    )
    final = parts[-1]
    assert isinstance(final, Reply)
    assert parts[0] == ToolCallDelta(0, "{}", id=final.tool_calls[0].id, name="weather")


async def test_each_of_several_answers_streams_its_calls_under_its_choice() -> None:
    call = {"index": 0, "id": "call_b", "function": {"name": "weather", "arguments": "{}"}}
    parts = await _parts(
        openai_streaming(
            _chunk(0, content="Oslo."),
            _chunk(1, tool_calls=[call]),
            _chunk(1, "tool_calls"),
            _chunk(0, "stop"),
            b"[DONE]",
        ),
        replace(CALL, n=2),
    )
    assert ToolCallDelta(0, "{}", id="call_b", name="weather", choice=1) in parts


async def test_the_sink_sends_a_piece_as_output_under_its_answer() -> None:
    sent: list[bytes] = []

    async def publish(_subject: str, data: bytes) -> None:
        sent.append(data)

    sink = ChunkSink(publish, tenant_id="acme", task_id="t1")
    sink.announce("oai/tool-call")
    await sink.tool_call(ToolCallDelta(0, "", id="call_a", name="weather", choice=1))
    await sink.tool_call(ToolCallDelta(0, '{"city": "Oslo"}', choice=1))
    first, second = (decode_chunk(s) for s in sent)
    assert first.tool_call is not None and (first.tool_call.id, first.tool_call.name) == ("call_a", "weather")
    assert (first.model, first.choice, first.seq) == ("oai/tool-call", 1, 0)
    assert second.tool_call is not None and (second.tool_call.arguments, second.seq) == (
        '{"city": "Oslo"}',
        1,
    )
    assert sink.text_sent  # output went out: the stream cannot switch to another candidate now


def _anthropic(*events: dict[str, Any]) -> AnthropicProvider:
    body = b"".join(f"event: {e['type']}\n".encode() + b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, content=body)),
        base_url="http://upstream.test/",
    )
    settings = AnthropicSettings(api_key="sk-ant-test", base_url="http://upstream.test")
    return AnthropicProvider(settings, client=client)


async def test_anthropic_tool_use_blocks_stream_as_call_pieces_numbered_among_the_calls() -> None:
    """Block 0 is text; the calls are blocks 1 and 2, calls 0 and 1. A call whose input streamed no JSON
    (a tool without parameters) gets its whole input when its block stops."""

    def block(index: int, content: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_start", "index": index, "content_block": content}

    def delta(index: int, content: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": content}

    provider = _anthropic(
        {"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 5}}},
        block(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "Let me look."}),
        {"type": "content_block_stop", "index": 0},
        block(1, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}),
        delta(1, {"type": "input_json_delta", "partial_json": '{"city": '}),
        delta(1, {"type": "input_json_delta", "partial_json": '"Oslo"}'}),
        {"type": "content_block_stop", "index": 1},
        block(2, {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}),
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    )
    try:
        parts = [part async for part in provider.stream(CALL)]
    finally:
        await provider.aclose()
    assert [p for p in parts if isinstance(p, ToolCallDelta)] == [
        ToolCallDelta(0, "", id="toolu_1", name="weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Oslo"}'),
        ToolCallDelta(1, "", id="toolu_2", name="now"),
        ToolCallDelta(1, "{}"),
    ]
    final = parts[-1]
    assert isinstance(final, Reply)
    assert [(c.id, c.function.arguments) for c in final.tool_calls] == [
        ("toolu_1", '{"city": "Oslo"}'),
        ("toolu_2", "{}"),
    ]


def _pieces(parts: list[StreamPart]) -> list[ToolCallDelta]:
    return [p for p in parts if isinstance(p, ToolCallDelta)]


async def test_a_name_split_over_pieces_goes_out_whole_with_the_first_arguments() -> None:
    """The Anthropic and Responses faces open a call's block or item with its name: a name an
    OpenAI-compatible server streams in pieces is held until the call's arguments begin."""
    parts = await _parts(
        openai_streaming(
            _chunk(tool_calls=[{"index": 0, "id": "call_a", "function": {"name": "get_"}}]),
            _chunk(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": ""}}]),
            _chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city": "Oslo"}'}}]),
            _chunk(finish="tool_calls"),
            b"[DONE]",
        )
    )
    assert _pieces(parts) == [ToolCallDelta(0, '{"city": "Oslo"}', id="call_a", name="get_weather")]


async def test_a_call_that_streamed_no_arguments_goes_out_with_the_empty_object_its_whole_call_has() -> None:
    """A client that adds up the pieces gets what the reply holds (`{}`), not an empty string."""
    empty = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "now", "arguments": ""}}
    parts = await _parts(openai_streaming(_chunk(tool_calls=[empty]), _chunk(finish="tool_calls"), b"[DONE]"))
    final = parts[-1]
    assert isinstance(final, Reply) and final.tool_calls[0].function.arguments == "{}"
    assert _pieces(parts) == [ToolCallDelta(0, "{}", id="call_a", name="now")]


async def test_pieces_are_numbered_as_the_reply_numbers_its_calls_whatever_the_server_numbers_them() -> None:
    """A server that numbers its calls from 1: the faces match a piece's `index` to the reply's calls."""
    parts = await _parts(
        openai_streaming(
            _chunk(tool_calls=[{"index": 1, "id": "call_a", "function": {"name": "now", "arguments": "{}"}}]),
            _chunk(finish="tool_calls"),
            b"[DONE]",
        )
    )
    assert _pieces(parts) == [ToolCallDelta(0, "{}", id="call_a", name="now")]
    final = parts[-1]
    assert isinstance(final, Reply) and [c.id for c in final.tool_calls] == ["call_a"]


async def test_the_sink_encodes_a_piece_as_the_chunk_model_encodes_it() -> None:
    """The sink writes a piece's JSON itself (a file's contents may come in tens of thousands of pieces):
    the JSON `encode_chunk` makes of the same Chunk."""
    sent: list[bytes] = []

    async def publish(_subject: str, data: bytes) -> None:
        sent.append(data)

    sink = ChunkSink(publish, tenant_id="acme", task_id="t1")
    sink.announce("oai/tool-call")
    pieces = [
        ToolCallDelta(0, '{"a"', id="call_a", name="write"),
        ToolCallDelta(0, ": 1}"),
        ToolCallDelta(1, "", id="toolu_1", name="now", choice=2),
    ]
    for piece in pieces:
        await sink.tool_call(piece)
    expected = [
        Chunk(
            seq=0,
            model="oai/tool-call",
            tool_call=ToolCallPiece(index=0, id="call_a", name="write", arguments='{"a"'),
        ),
        Chunk(seq=1, tool_call=ToolCallPiece(index=0, arguments=": 1}")),
        Chunk(seq=2, choice=2, tool_call=ToolCallPiece(index=1, id="toolu_1", name="now")),
    ]
    assert [orjson.loads(s) for s in sent] == [orjson.loads(encode_chunk(c)) for c in expected]


async def test_calls_a_server_numbers_alike_are_told_apart_by_their_ids() -> None:
    """Ollama (ollama/ollama#15457) streams every parallel call with `index: 0`, each with its own id:
    two calls, not one named `file_writefile_write` with arguments `{...}{...}`."""

    def write(call_id: str, path: str) -> dict[str, Any]:
        arguments = orjson.dumps({"path": path}).decode()
        return {"index": 0, "id": call_id, "function": {"name": "file_write", "arguments": arguments}}

    parts = await _parts(
        openai_streaming(
            _chunk(tool_calls=[write("call_a", "hello.py")]),
            _chunk(tool_calls=[write("call_b", "world.py")]),
            _chunk(
                tool_calls=[{"index": 0, "function": {"arguments": ""}}]
            ),  # a piece without an id: the last
            _chunk(finish="tool_calls"),
            b"[DONE]",
        )
    )
    assert _pieces(parts) == [
        ToolCallDelta(0, '{"path":"hello.py"}', id="call_a", name="file_write"),
        ToolCallDelta(1, '{"path":"world.py"}', id="call_b", name="file_write"),
    ]
    final = parts[-1]
    assert isinstance(final, Reply)
    assert [(c.id, c.function.name, c.function.arguments) for c in final.tool_calls] == [
        ("call_a", "file_write", '{"path":"hello.py"}'),
        ("call_b", "file_write", '{"path":"world.py"}'),
    ]


def test_a_piece_with_another_id_but_no_name_is_more_of_the_same_call() -> None:
    """A server that gives every piece an id of its own: one call (a new call's first piece names it)."""
    deltas = ToolCallDeltas()
    deltas.add([{"index": 0, "id": "call_1", "function": {"name": "weather", "arguments": '{"city"'}}])
    deltas.add([{"index": 0, "id": "call_2", "function": {"arguments": ': "Oslo"}'}}])
    assert [(c.id, c.function.arguments) for c in deltas.calls()] == [("call_1", '{"city": "Oslo"}')]


async def _response_parts(*events: dict[str, Any]) -> list[StreamPart]:
    body = b"".join(f"event: {e['type']}\n".encode() + b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return [p async for p in openai_responses.response_parts(httpx.Response(200, content=body), CALL)]


async def test_a_call_from_openais_responses_api_streams_in_pieces_too() -> None:
    """OpenAI's models that take tools only through /v1/responses (the calls with tools go there) stream a
    function call as its item's `output_item.added` and `function_call_arguments.delta` events: they go
    on as the call's pieces, numbered among the calls as the reply's, not whole at the answer's end."""

    def added(at: int, item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "response.output_item.added", "output_index": at, "item": item}

    def arguments(at: int, delta: str) -> dict[str, Any]:
        return {"type": "response.function_call_arguments.delta", "output_index": at, "delta": delta}

    weather = {"type": "function_call", "id": "fc_1", "call_id": "call_w", "name": "weather", "arguments": ""}
    now = {"type": "function_call", "id": "fc_2", "call_id": "call_n", "name": "now", "arguments": ""}
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
    whole = {
        "status": "completed",
        "model": "gpt-6-sol",
        "output": [
            reasoning,
            {**weather, "arguments": '{"city": "Oslo"}'},
            {**now, "arguments": "{}"},
        ],
    }
    parts = await _response_parts(
        added(0, reasoning),
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "Two tools."},
        added(1, weather),
        arguments(1, '{"city"'),
        arguments(1, ': "Oslo"}'),
        added(2, now),  # no arguments streamed: the whole call's
        {"type": "response.completed", "response": whole},
    )
    assert parts[:2] == [ThinkingDelta("Two tools."), ThinkingDelta(signature="")]  # ended before the calls
    assert _pieces(parts) == [
        ToolCallDelta(0, "", id="call_w", name="weather"),
        ToolCallDelta(0, '{"city"'),
        ToolCallDelta(0, ': "Oslo"}'),
        ToolCallDelta(1, "", id="call_n", name="now"),
        ToolCallDelta(1, "{}"),
    ]
    final = parts[-1]
    assert isinstance(final, Reply)
    assert [(c.id, c.function.arguments) for c in final.tool_calls] == [
        ("call_w", '{"city": "Oslo"}'),
        ("call_n", "{}"),
    ]


async def test_a_call_begins_before_the_next_one_whatever_comes_first_of_its_arguments() -> None:
    """Interleaved calls, the second's arguments before the first's: the first call's piece still comes
    first (the OpenAI SDK's stream fails with an IndexError on a call's index before the one it has),
    its name whole since the server went on to the next call; its arguments follow as they come."""
    parts = await _parts(
        openai_streaming(
            _chunk(tool_calls=[{"index": 0, "id": "call_a", "function": {"name": "get_"}}]),
            _chunk(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": ""}}]),
            _chunk(tool_calls=[{"index": 1, "id": "call_b", "function": {"name": "now", "arguments": "{"}}]),
            _chunk(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]),
            _chunk(tool_calls=[{"index": 1, "function": {"arguments": "}"}}]),
            _chunk(finish="tool_calls"),
            b"[DONE]",
        )
    )
    assert _pieces(parts) == [
        ToolCallDelta(0, "", id="call_a", name="get_weather"),
        ToolCallDelta(1, "{", id="call_b", name="now"),
        ToolCallDelta(0, "{}"),
        ToolCallDelta(1, "}"),
    ]


async def test_a_begun_call_that_streamed_no_arguments_ends_with_the_empty_object() -> None:
    parts = await _parts(
        openai_streaming(
            _chunk(tool_calls=[{"index": 0, "id": "call_a", "function": {"name": "now", "arguments": ""}}]),
            _chunk(tool_calls=[{"index": 1, "id": "call_b", "function": {"name": "now", "arguments": "{}"}}]),
            _chunk(finish="tool_calls"),
            b"[DONE]",
        )
    )
    assert _pieces(parts) == [
        ToolCallDelta(0, "", id="call_a", name="now"),
        ToolCallDelta(1, "{}", id="call_b", name="now"),
        ToolCallDelta(0, "{}"),
    ]
    final = parts[-1]
    assert isinstance(final, Reply) and [c.function.arguments for c in final.tool_calls] == ["{}", "{}"]
