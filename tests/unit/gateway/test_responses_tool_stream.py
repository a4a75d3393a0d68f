"""Tool calls streamed in pieces reach the Responses face's clients as OpenAI streams them: each call's item
added (its call id and name, empty arguments) at its first piece, its argument pieces as
`response.function_call_arguments.delta` events (a custom tool's text as `custom_tool_call_input.delta`),
then its `.done` and `response.output_item.done` before the next item opens; the completed (and stored)
response is the answer's, as before."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.common.events import FunctionCall, TaskCompleted, ToolCall
from switchyard.common.streaming import Chunk, ChunkError, ToolCallPiece
from switchyard.gateway import responses, responses_render, responses_stream
from switchyard.gateway.responses_tools import CustomInput, custom_input
from tests.unit.gateway.streams import items, sse_data
from tests.unit.gateway.test_responses_codex import _codex, _lite
from tests.unit.gateway.test_responses_codex import _task as _codex_task
from tests.unit.gateway.test_responses_face import THOUGHT, WEATHER, _done, _task

pytestmark = pytest.mark.unit

MODEL = "openai/gpt-4o-mini"


def _pieces(index: int, call_id: str, name: str, *arguments: str, seq: int = 0) -> list[Chunk]:
    first = Chunk(seq=seq, tool_call=ToolCallPiece(index=index, id=call_id, name=name))
    rest = [
        Chunk(seq=seq + 1 + n, tool_call=ToolCallPiece(index=index, arguments=a))
        for n, a in enumerate(arguments)
    ]
    return [first, *rest]


async def _stream(
    task: Any, chunks: list[Chunk], done: TaskCompleted | None, **kw: Any
) -> list[dict[str, Any]]:
    given = [*chunks, *([done] if done is not None else [])]
    return sse_data(
        [
            e
            async for e in responses_stream.stream_events(
                task, given[:1], items(*given[1:]), timeout_s=5, **kw
            )
        ]
    )


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


async def test_a_calls_pieces_stream_as_argument_deltas_after_the_text_before_it() -> None:
    task = _task(stream=True, tools=[WEATHER])
    chunks = [
        Chunk(seq=0, delta="Let me look.", model=MODEL),
        *_pieces(0, "call_1", "get_weather", '{"city"', ': "Paris"}', seq=1),
    ]
    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    done = _done(content="Let me look.", finish_reason="tool_calls", tool_calls=[call])
    events = await _stream(task, chunks, done)
    assert _kinds(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.done",  # the message ends before the call's item opens
        "content_part.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = events[8]
    assert added["output_index"] == 1 and added["item"] == {
        "id": f"fc_{task.task_id}_0",
        "type": "function_call",
        "status": "in_progress",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "",
    }
    deltas = events[9:11]
    assert [d["delta"] for d in deltas] == ['{"city"', ': "Paris"}']
    assert {(d["item_id"], d["output_index"]) for d in deltas} == {(added["item"]["id"], 1)}
    assert events[11]["arguments"] == '{"city": "Paris"}' and events[11]["name"] == "get_weather"
    final = events[-1]["response"]
    assert events[7]["item"] == final["output"][0] and events[12]["item"] == final["output"][1]
    assert final["output"][1]["arguments"] == '{"city": "Paris"}'


async def test_several_calls_each_end_before_the_next_opens_a_namespace_tools_as_the_client_named_it() -> (
    None
):
    body = _codex()
    task = _codex_task(body)
    chunks = [
        *_pieces(0, "call_1", "multi_agent_v1__close_agent", '{"target":', ' "a1"}'),
        *_pieces(1, "call_2", "exec_command", "", '{"cmd": "ls"}', seq=3),
    ]
    calls = [
        ToolCall(
            id="call_1",
            function=FunctionCall(name="multi_agent_v1__close_agent", arguments='{"target": "a1"}'),
        ),
        ToolCall(id="call_2", function=FunctionCall(name="exec_command", arguments='{"cmd": "ls"}')),
    ]
    done = _done(content="", finish_reason="tool_calls", tool_calls=calls)
    events = await _stream(task, chunks, done, named=responses.tools_of(body, None))
    assert _kinds(events)[2:-1] == [
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",  # the empty piece is no delta
        "function_call_arguments.done",
        "output_item.done",
    ]
    first, second = events[2]["item"], events[7]["item"]
    assert (first["name"], first["namespace"], first["call_id"]) == (
        "close_agent",
        "multi_agent_v1",
        "call_1",
    )
    assert (second["name"], "namespace" in second, events[7]["output_index"]) == ("exec_command", False, 1)
    assert events[5]["name"] == "close_agent"
    final = events[-1]["response"]
    assert [events[6]["item"], events[10]["item"]] == final["output"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_a_custom_tools_text_streams_once_its_arguments_wrapper_is_known() -> None:
    """The model writes `{"input": "..."}`: the deltas carry the text, decoded (an escape split between
    pieces waits for its end), never the JSON around it."""
    body = _lite()
    task = _codex_task(body)
    chunks = _pieces(0, "call_3", "exec", '{"inp', 'ut": "te', "xt(1 ", "+ 1)\\", "n\\u00", "e9", '"}')
    script = ToolCall(
        id="call_3", function=FunctionCall(name="exec", arguments='{"input": "text(1 + 1)\\n\\u00e9"}')
    )
    done = _done(content="", finish_reason="tool_calls", tool_calls=[script])
    events = await _stream(task, chunks, done, named=responses.tools_of(body, None))
    assert _kinds(events)[2:-1] == [
        "output_item.added",
        *["custom_tool_call_input.delta"] * 5,
        "custom_tool_call_input.done",
        "output_item.done",
    ]
    assert events[2]["item"] == {
        "id": f"ctc_{task.task_id}_0",
        "type": "custom_tool_call",
        "status": "in_progress",
        "call_id": "call_3",
        "name": "exec",
        "input": "",
    }
    assert [e["delta"] for e in events[3:8]] == ["te", "xt(1 ", "+ 1)", "\n", "é"]
    assert events[8]["input"] == "text(1 + 1)\né" and events[9]["item"]["input"] == "text(1 + 1)\né"
    assert events[-1]["response"]["output"] == [events[9]["item"]]


@pytest.mark.parametrize(
    ("pieces", "streamed", "text"),
    [
        (['{"input": "a\\ud83d', "\\ude00", 'b"}'], ["a", "😀", "b"], "a😀b"),  # a surrogate pair waits
        (['{ "input" :"x', '"', "}"], ["x"], "x"),
        (['{"other": 1, "input": "x"}'], [], "x"),  # another shape: at the end
        (["exit 0"], [], "exit 0"),  # not JSON: at the end, as it is
        (['{"input": "a\\q', 'b"}'], [], '{"input": "a\\qb"}'),  # a bad escape: nothing more streams
    ],
)
def test_a_custom_tools_text_decodes_piece_by_piece(
    pieces: list[str], streamed: list[str], text: str
) -> None:
    reader = CustomInput()
    assert [t for t in (reader.add(p) for p in pieces) if t] == streamed
    assert custom_input("".join(pieces)).startswith(reader.text) and custom_input("".join(pieces)) == text


async def test_a_custom_tools_text_in_another_shape_comes_whole_at_the_calls_end() -> None:
    body = _lite()
    task = _codex_task(body)
    chunks = _pieces(0, "call_3", "exec", "exit ", "0")
    done = _done(
        content="",
        finish_reason="tool_calls",
        tool_calls=[ToolCall(id="call_3", function=FunctionCall(name="exec", arguments="exit 0"))],
    )
    events = await _stream(task, chunks, done, named=responses.tools_of(body, None))
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert deltas == ["exit 0"]


async def test_a_stream_that_breaks_mid_call_ends_with_response_failed() -> None:
    task = _task(stream=True, tools=[WEATHER])
    chunks = [
        *_pieces(0, "call_1", "get_weather", '{"city"'),
        Chunk(seq=2, error=ChunkError(code="provider_network", message="the upstream went away")),
    ]
    events = await _stream(task, chunks, None)
    assert _kinds(events)[2:] == ["output_item.added", "function_call_arguments.delta", "error", "failed"]
    assert events[-1]["response"]["status"] == "failed"


async def test_the_stored_response_is_the_answers_kept_before_the_completion() -> None:
    task = _task(stream=True, tools=[WEATHER])
    kept: list[dict[str, Any]] = []

    async def keep(body: dict[str, Any]) -> bool:
        kept.append(body)
        return True

    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    done = _done(content="", finish_reason="tool_calls", tool_calls=[call])
    events = await _stream(
        task, _pieces(0, "call_1", "get_weather", '{"city": ', '"Paris"}'), done, keep=keep
    )
    whole = responses_render.response_body(task, done, created=events[0]["response"]["created_at"])
    assert [kept[0]["output"], events[-1]["response"]["output"]] == [whole["output"]] * 2
    assert events[-1]["response"]["store"] is True


async def test_a_call_after_thinking_is_the_item_after_its_reasoning_item() -> None:
    task = _task(stream=True, tools=[WEATHER])
    chunks = [
        Chunk(seq=0, thinking="Let me think.", model=MODEL),
        Chunk(seq=1, signature="c2ln"),
        *_pieces(0, "call_1", "get_weather", '{"city": "Paris"}', seq=2),
    ]
    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    done = _done(content="", finish_reason="tool_calls", tool_calls=[call], thinking=[THOUGHT])
    events = await _stream(task, chunks, done)
    added = [
        (e["output_index"], e["item"]["type"]) for e in events if e["type"] == "response.output_item.added"
    ]
    assert added == [(0, "reasoning"), (1, "function_call")]
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["reasoning", "function_call"]
    assert items[1] == events[-1]["response"]["output"][1]


async def test_a_call_interleaved_with_an_unfinished_one_waits_for_it() -> None:
    """One call's item is open at a time: pieces of another that come while the open call's arguments are
    not whole JSON wait, and go at its next piece after (or, still waiting at the end, whole)."""
    task = _task(stream=True, tools=[WEATHER])
    a, b = (
        Chunk(seq=0, tool_call=ToolCallPiece(index=n, id=f"call_{n}", name="get_weather")) for n in (0, 1)
    )
    chunks = [
        a,
        Chunk(seq=1, tool_call=ToolCallPiece(index=0, arguments='{"city"')),
        b.model_copy(update={"seq": 2}),
        Chunk(seq=3, tool_call=ToolCallPiece(index=1, arguments='{"city": "Oslo"}')),
        Chunk(seq=4, tool_call=ToolCallPiece(index=0, arguments=': "Paris"}')),
        Chunk(seq=5, tool_call=ToolCallPiece(index=1, arguments=" ")),
    ]
    calls = [
        ToolCall(id=f"call_{n}", function=FunctionCall(name="get_weather", arguments=arguments))
        for n, arguments in enumerate(['{"city": "Paris"}', '{"city": "Oslo"} '])
    ]
    events = await _stream(task, chunks, _done(content="", finish_reason="tool_calls", tool_calls=calls))
    shape = [
        (e["type"].removeprefix("response."), e["output_index"], e.get("delta"))
        for e in events[2:-1]
        if e["type"] != "response.function_call_arguments.done"
    ]
    assert shape == [
        ("output_item.added", 0, None),
        ("function_call_arguments.delta", 0, '{"city"'),
        ("function_call_arguments.delta", 0, ': "Paris"}'),
        ("output_item.done", 0, None),
        ("output_item.added", 1, None),
        ("function_call_arguments.delta", 1, '{"city": "Oslo"}'),
        ("function_call_arguments.delta", 1, " "),
        ("output_item.done", 1, None),
    ]
    assert [events[6]["item"], events[-2]["item"]] == events[-1]["response"]["output"]
    waiting = await _stream(task, chunks[:4], _done(content="", finish_reason="tool_calls", tool_calls=calls))
    assert [e["delta"] for e in waiting if e["type"].endswith("arguments.delta")] == [
        '{"city"',
        ': "Paris"}',  # the rest, from the answer
        '{"city": "Oslo"} ',  # whole
    ]
