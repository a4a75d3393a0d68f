"""The Anthropic face streams each tool call as Anthropic does and as the model streams it: its
`content_block_start` (tool_use id and name, `input: {}`) at the call's first piece, its arguments as
`input_json_delta` pieces as they come, its `content_block_stop`; each block at the next index, one open at a
time; `input` always an object; a break mid-call ends with an `error` event, never `message_stop`."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchyard.common.events import TaskCompleted, TaskFailed, ToolCall
from switchyard.common.events.tasks import FunctionCall
from switchyard.common.streaming import Chunk, ChunkError, ToolCallPiece
from switchyard.gateway import completions, messages, messages_render
from switchyard.gateway.tenants import Principal
from tests.unit.gateway.streams import calls_answer, items, sse_data

pytestmark = pytest.mark.unit

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
WRITE = '{"file_path": "/tmp/a.py", "content": "print(1)\\n"}'


def _call(call_id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))


def _chunks(*given: dict[str, Any]) -> list[Chunk]:
    """Chunks numbered in order: a dict with `tool_call` is a piece, else the chunk's own fields."""
    out = []
    for seq, fields in enumerate(given):
        piece = fields.get("tool_call")
        call = {"tool_call": ToolCallPiece(**piece)} if piece is not None else {}
        out.append(Chunk(seq=seq, **{**fields, **call}))
    return out


async def _events(*given: Chunk | TaskCompleted | TaskFailed) -> list[dict[str, Any]]:
    body = {"model": "oai/tool-call", "max_tokens": 50, "messages": [{"role": "user", "content": "Write"}]}
    tool = {"name": "Write", "input_schema": {"type": "object"}}
    parsed = messages.parse_request(
        orjson.dumps({**body, "tools": [tool], "stream": True}), max_prompt_chars=999
    )
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    rendered = messages_render.stream_events(task, [], items(*given), timeout_s=5)  # type: ignore[arg-type]
    return sse_data([e async for e in rendered])


def _shape(data: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each block event as (type, index, what it carries)."""
    out: list[tuple[Any, ...]] = []
    for d in data:
        if d["type"] == "content_block_start":
            block = d["content_block"]
            out.append(("start", d["index"], block.get("id") or block["type"], block.get("input")))
        elif d["type"] == "content_block_delta":
            delta = d["delta"]
            out.append(("delta", d["index"], delta.get("partial_json", delta.get("text"))))
        elif d["type"] == "content_block_stop":
            out.append(("stop", d["index"]))
    return out


def _inputs(data: list[dict[str, Any]]) -> dict[int, Any]:
    """Each tool_use block's input as the SDKs accumulate it: its pieces joined, parsed."""
    joined: dict[int, str] = {}
    for d in data:
        if d["type"] == "content_block_start" and d["content_block"]["type"] == "tool_use":
            joined[d["index"]] = ""
        if d["type"] == "content_block_delta" and d["delta"]["type"] == "input_json_delta":
            joined[d["index"]] += d["delta"]["partial_json"]
    return {index: orjson.loads(text) for index, text in joined.items()}


async def test_a_call_streams_in_its_pieces_after_the_text() -> None:
    chunks = _chunks(
        {"delta": "Writing it."},
        {"tool_call": {"index": 0, "id": "call_a", "name": "Write"}},
        {"tool_call": {"index": 0, "arguments": '{"file_path": "/tmp/a.py", '}},
        {"tool_call": {"index": 0, "arguments": '"content": "print(1)\\n"}'}},
    )
    data = await _events(*chunks, calls_answer(_call("call_a", "Write", WRITE), content="Writing it."))
    assert _shape(data) == [
        ("start", 0, "text", None),
        ("delta", 0, "Writing it."),
        ("stop", 0),
        ("start", 1, "call_a", {}),
        ("delta", 1, '{"file_path": "/tmp/a.py", '),
        ("delta", 1, '"content": "print(1)\\n"}'),
        ("stop", 1),
    ]
    assert [d["type"] for d in data][-2:] == ["message_delta", "message_stop"]
    assert data[-2]["delta"]["stop_reason"] == "tool_use"
    assert data[5]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "Write", "input": {}}


async def test_thinking_text_and_two_calls_take_the_next_indexes() -> None:
    chunks = _chunks(
        {"thinking": "Two files."},
        {"signature": "sig"},
        {"delta": "Both."},
        {"tool_call": {"index": 0, "id": "call_a", "name": "Write", "arguments": '{"n"'}},
        {"tool_call": {"index": 0, "arguments": ": 1}"}},
        {"tool_call": {"index": 1, "id": "call_b", "name": "Write"}},
        {"tool_call": {"index": 1, "arguments": '{"n": 2}'}},
    )
    done = calls_answer(
        _call("call_a", "Write", '{"n": 1}'), _call("call_b", "Write", '{"n": 2}'), content="Both."
    )
    data = await _events(*chunks, done)
    starts = [(s[1], s[2]) for s in _shape(data) if s[0] == "start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "call_a"), (3, "call_b")]
    stops = [s[1] for s in _shape(data) if s[0] == "stop"]
    assert stops == [0, 1, 2, 3]
    assert _inputs(data) == {2: {"n": 1}, 3: {"n": 2}}
    assert [s[2] for s in _shape(data) if s[0] == "delta" and s[1] == 2] == ['{"n"', ": 1}"]
    # one block open at a time: each stop comes before the next start
    opened = [s[0] for s in _shape(data) if s[0] in ("start", "stop")]
    assert opened == ["start", "stop"] * 4


async def test_the_rest_of_an_open_call_comes_from_the_whole_call() -> None:
    """An input the provider gave whole at its block's end (Anthropic's adapter) or that streamed nothing:
    the open block gets what its pieces did not carry, `{}` for an empty one."""
    chunks = _chunks({"tool_call": {"index": 0, "id": "call_a", "name": "Now"}})
    data = await _events(*chunks, calls_answer(_call("call_a", "Now", "{}")))
    assert _shape(data) == [("start", 0, "call_a", {}), ("delta", 0, "{}"), ("stop", 0)]


async def test_a_call_interleaved_with_an_incomplete_one_waits_for_it() -> None:
    """One block is open at a time: pieces of another call that come while the open one's arguments are
    incomplete wait; its block starts with them at its next piece after (or at the answer's end)."""
    chunks = _chunks(
        {"tool_call": {"index": 0, "id": "call_a", "name": "Write", "arguments": '{"n"'}},
        {"tool_call": {"index": 1, "id": "call_b", "name": "Read", "arguments": '{"p"'}},
        {"tool_call": {"index": 0, "arguments": ": 1}"}},
        {"tool_call": {"index": 1, "arguments": ': "x"}'}},
    )
    done = calls_answer(_call("call_a", "Write", '{"n": 1}'), _call("call_b", "Read", '{"p": "x"}'))
    data = await _events(*chunks, done)
    assert _shape(data) == [
        ("start", 0, "call_a", {}),
        ("delta", 0, '{"n"'),
        ("delta", 0, ": 1}"),
        ("stop", 0),
        ("start", 1, "call_b", {}),
        ("delta", 1, '{"p": "x"}'),
        ("stop", 1),
    ]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["nu", "ll"], {}),
        (["[1,", " 2]"], {"input": [1, 2]}),
        (["Oslo", " please"], {"input": "Oslo please"}),
    ],
)
async def test_arguments_that_are_no_object_go_once_as_the_object_they_make(
    pieces: list[str], expected: dict[str, Any]
) -> None:
    """Anthropic's `input` is always an object: arguments that do not begin with `{` are held, not
    streamed, and go as one delta of what `arguments_object` makes of them (as a whole answer's)."""
    chunks = _chunks(
        {"tool_call": {"index": 0, "id": "call_a", "name": "Where"}},
        *({"tool_call": {"index": 0, "arguments": p}} for p in pieces),
    )
    data = await _events(*chunks, calls_answer(_call("call_a", "Where", "".join(pieces))))
    assert [s[0] for s in _shape(data)] == ["start", "delta", "stop"]
    assert _inputs(data) == {0: expected}


async def test_a_stream_that_breaks_mid_call_ends_with_an_error() -> None:
    chunks = _chunks(
        {"tool_call": {"index": 0, "id": "call_a", "name": "Write", "arguments": '{"file_path": "/tm'}},
        {"error": ChunkError(code="provider_error", message="upstream went away")},
    )
    data = await _events(*chunks)
    assert [d["type"] for d in data] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert data[-1]["error"]["message"] == "upstream went away"


async def test_an_answer_sent_whole_still_sends_each_call_whole() -> None:
    data = await _events(calls_answer(_call("call_a", "Write", WRITE), _call("call_b", "Read", "null")))
    assert _shape(data) == [
        ("start", 0, "call_a", {}),
        ("delta", 0, orjson.dumps(orjson.loads(WRITE)).decode()),
        ("stop", 0),
        ("start", 1, "call_b", {}),
        ("delta", 1, "{}"),
        ("stop", 1),
    ]
    assert data[-2]["delta"]["stop_reason"] == "tool_use"


async def test_a_call_that_waited_starts_before_a_later_one() -> None:
    """The second call's pieces all came while the first's arguments were incomplete; the third call's
    piece comes after: the second's block starts first, as the calls' order in the answer (the order a
    message sent whole has them in)."""
    chunks = _chunks(
        {"tool_call": {"index": 0, "id": "call_a", "name": "Write", "arguments": '{"n"'}},
        {"tool_call": {"index": 1, "id": "call_b", "name": "Read", "arguments": '{"p": "x"}'}},
        {"tool_call": {"index": 0, "arguments": ": 1}"}},
        {"tool_call": {"index": 2, "id": "call_c", "name": "Now", "arguments": "{}"}},
    )
    calls = (
        _call("call_a", "Write", '{"n": 1}'),
        _call("call_b", "Read", '{"p": "x"}'),
        _call("call_c", "Now", "{}"),
    )
    data = await _events(*chunks, calls_answer(*calls))
    starts = [d["content_block"]["id"] for d in data if d["type"] == "content_block_start"]
    assert starts == ["call_a", "call_b", "call_c"]
    assert _inputs(data) == {0: {"n": 1}, 1: {"p": "x"}, 2: {}}
