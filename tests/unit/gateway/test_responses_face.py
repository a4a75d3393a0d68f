"""The Responses API face: input items to the pipeline's chat request, and an answer to a Response, whole
and as its numbered stream of typed events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from switchyard.common.events import (
    FunctionCall,
    Reasoning,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    ThinkingBlock,
    ToolCall,
    Usage,
)
from switchyard.common.media_tokens import MediaRule, media_tokens
from switchyard.common.streaming import Chunk, ChunkError
from switchyard.gateway import completions, responses, responses_render, responses_stream
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.tenants import Principal
from tests.support import media

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
CALL = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
THOUGHT = ThinkingBlock(thinking="Let me think.", signature="c2ln")


def _parse(**fields: Any) -> Any:
    body = {"model": "auto", "input": "What is the capital of France?", **fields}
    return responses.parse_request(orjson.dumps(body), max_prompt_chars=10_000)


def _task(**fields: Any) -> TaskSubmitted:
    return completions.build_task(_parse(**fields), PRINCIPAL, priority=None)


def test_a_string_input_and_instructions_are_a_system_and_a_user_turn() -> None:
    request = _task(instructions="Be brief.", max_output_tokens=50, temperature=0.2).request
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "What is the capital of France?"),
    ]
    assert (request.max_tokens, request.temperature) == (50, 0.2)


def test_input_items_become_the_conversation_with_its_tool_turns() -> None:
    items = [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {
            "type": "function_call",
            "call_id": "call_2",
            "name": "get_weather",
            "arguments": '{"city": "Rome"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [{"type": "input_text", "text": "21C"}],
        },
        {"role": "assistant", "content": [{"type": "output_text", "text": "Paris 18C, Rome 21C."}]},
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}]},
    ]
    request = _task(
        input=items, tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}
    ).request
    assert [m.role for m in request.messages] == [
        "developer",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]
    calls = request.messages[2].tool_calls
    assert calls is not None and [c.id for c in calls] == ["call_1", "call_2"]  # one turn, both calls
    assert [(m.tool_call_id, m.content) for m in request.messages[3:5]] == [
        ("call_1", "18C"),
        ("call_2", "21C"),
    ]
    assert request.messages[6].content == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    ]
    assert request.tools is not None and request.tools[0].function.name == "get_weather"
    assert request.tool_choice == {"type": "function", "function": {"name": "get_weather"}}


def test_text_format_and_reasoning_map_to_the_pipelines_fields() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = _task(
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
        reasoning={"effort": "high", "summary": "auto"},
    ).request
    assert request.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert request.json_schema() == schema and request.reasoning == Reasoning(effort="high")
    assert _task(reasoning={"effort": "none"}).request.reasoning == Reasoning(effort="none")


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "unsupported_parameter"),
        ({"background": True}, "background", "unsupported_parameter"),
        ({"tools": [{"type": "local_shell"}]}, "tools.0.type", "unsupported_parameter"),
        ({"tools": [{"type": "function"}]}, "tools.0.name", "missing_field"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0", "unsupported_parameter"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input.0.role", "invalid_request"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input.0.content.0.file_id",
            "unsupported_parameter",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0", "invalid_request"),
        (
            {"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]},
            "input",
            "invalid_value",
        ),
        ({"input": []}, "input", "invalid_value"),
        ({"text": {"format": {"type": "xml"}}}, "text.format", "invalid_request"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice", "invalid_value"),
        ({"max_output_tokens": "5"}, "max_output_tokens", "invalid_type"),
    ],
)
def test_what_cannot_be_served_is_a_400_naming_the_field(
    fields: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        _parse(**fields)
    assert (err.value.status, err.value.param, err.value.code) == (400, param, code)


def test_an_input_of_neither_shape_is_told_both() -> None:
    with pytest.raises(InvalidRequest) as err:
        _parse(input={"role": "user", "content": "hi"})  # one message, not in a list
    assert (err.value.param, err.value.code) == ("input", "invalid_type")
    assert err.value.message == "input: must be a string or a list of input items"


def _done(**kw: Any) -> TaskCompleted:
    fields: dict[str, Any] = dict(
        task_id="t1",
        tenant_id="acme",
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="fast",
        content="Paris.",
        finish_reason="stop",
        usage=Usage(prompt_tokens=20, completion_tokens=3, cache_read_tokens=8),
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )
    fields.update(kw)
    return TaskCompleted(**fields)


def test_an_answer_is_a_response_with_its_output_items_and_usage() -> None:
    task = _task(tools=[WEATHER])
    body = orjson.loads(responses_render.response_json(task, _done()))
    assert body["id"] == f"resp_{task.task_id}" and body["object"] == "response"
    assert (body["status"], body["incomplete_details"]) == ("completed", None)
    assert body["output"] == [
        {
            "id": f"msg_{task.task_id}",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Paris.", "annotations": [], "logprobs": []}],
        }
    ]
    assert body["usage"] == {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 23,
    }
    assert body["tools"] == [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    calls = orjson.loads(
        responses_render.response_json(task, _done(content="", finish_reason="tool_calls", tool_calls=[CALL]))
    )
    assert calls["output"] == [
        {
            "id": f"fc_{task.task_id}_0",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        }
    ]
    cut = orjson.loads(responses_render.response_json(task, _done(finish_reason="length")))
    assert (cut["status"], cut["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})


async def _nothing_more() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    return
    yield


async def _events(task: TaskSubmitted, head: list[Chunk | TaskCompleted]) -> list[dict[str, Any]]:
    raw = [e async for e in responses_stream.stream_events(task, head, _nothing_more(), timeout_s=5)]
    for e in raw:  # the SSE event name is the JSON's type
        name, data = e.split(b"\n", 1)
        assert name == b"event: " + orjson.loads(data[6:])["type"].encode()
    return [orjson.loads(e.split(b"data: ", 1)[1]) for e in raw]


async def test_a_streamed_answer_is_the_responses_event_sequence() -> None:
    task = _task(stream=True, tools=[WEATHER])
    head: list[Chunk | TaskCompleted] = [
        Chunk(seq=0, thinking="Let me ", model="openai/gpt-4o-mini"),
        Chunk(seq=1, thinking="think."),
        Chunk(seq=2, signature="c2ln"),
        Chunk(seq=3, delta="Par"),
        Chunk(seq=4, delta="is."),
        Chunk(seq=5, done=True, finish_reason="tool_calls"),
        _done(content="Paris.", finish_reason="tool_calls", tool_calls=[CALL], thinking=[THOUGHT]),
    ]
    events = await _events(task, head)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert (
        events[0]["response"]["status"] == "in_progress"
        and events[0]["response"]["model"] == "openai/gpt-4o-mini"
    )
    assert events[8]["item"] == responses_render.reasoning_item(
        task, 0, THOUGHT
    )  # the block, signature and all
    assert events[13]["text"] == "Paris." and [events[9]["output_index"], events[16]["output_index"]] == [
        1,
        2,
    ]
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][0] == events[8]["item"] and final["usage"]["total_tokens"] == 23


async def test_a_stream_that_breaks_ends_with_an_error_event_then_response_failed() -> None:
    """Clients (Codex, the SDK's accumulator, many proxies) wait for response.completed, .incomplete or
    .failed: a break is the `error` event with its code, then response.failed, never a completion."""
    task = _task(stream=True)
    head: list[Chunk | TaskCompleted] = [
        Chunk(seq=0, delta="Par"),
        Chunk(seq=1, error=ChunkError(code="provider_network", message="the upstream went away")),
    ]
    events = await _events(task, head)
    error, failed = events[-2:]
    assert (error["type"], error["code"]) == ("error", "provider_network")
    assert failed["type"] == "response.failed" and failed["sequence_number"] == error["sequence_number"] + 1
    assert (failed["response"]["id"], failed["response"]["status"]) == (f"resp_{task.task_id}", "failed")
    assert failed["response"]["error"] == {
        "code": "server_error",
        "message": "the upstream went away",
        "type": "api_error",
        "param": None,
    }
    assert not any(e["type"] == "response.completed" for e in events)
    gap = await _events(task, [Chunk(seq=0, delta="a"), Chunk(seq=2, delta="b")])
    assert gap[-2]["code"] == "stream_gap" and gap[-1]["type"] == "response.failed"


def test_thinking_travels_as_reasoning_items_and_comes_back_to_its_turn() -> None:
    task = _task()
    body = orjson.loads(responses_render.response_json(task, _done(thinking=[THOUGHT])))
    item = body["output"][0]
    assert item["type"] == "reasoning" and item["summary"] == [
        {"type": "summary_text", "text": "Let me think."}
    ]
    assert item["encrypted_content"].startswith(responses.THINKING_CARRIER)
    back = [
        {"role": "user", "content": "Weather in Paris?"},
        item,
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"type": "reasoning", "id": "rs_x", "summary": [], "encrypted_content": "gAAAAABo-openai-own"},
        {"role": "assistant", "content": "18C in Paris."},
    ]
    messages = _task(input=back, tools=[WEATHER]).request.messages
    assert messages[1].thinking == [THOUGHT] and messages[1].tool_calls is not None
    assert messages[3].thinking is None  # OpenAI's own encrypted reasoning is left out
    assert responses.carried_thinking(responses.THINKING_CARRIER + "not base64!") is None


def test_an_answers_text_and_its_calls_sent_back_are_one_assistant_turn() -> None:
    said = {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]}
    called = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}
    result = {"type": "function_call_output", "call_id": "call_1", "output": "18C"}
    asked = {"role": "user", "content": "Weather?"}
    messages = _task(input=[asked, said, called, result], tools=[WEATHER]).request.messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].text() == "Checking." and [c.id for c in messages[1].tool_calls or []] == ["call_1"]


def test_allowed_tools_narrows_the_tools_offered_to_those_it_names() -> None:
    clock = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_time"}],
    }
    request = _task(tools=[WEATHER, clock], tool_choice=choice).request
    assert [t.function.name for t in request.tools or []] == ["get_time"]
    assert request.tool_choice == "required"
    for tools, param in (
        ([{"type": "function", "name": "get_news"}], "tool_choice.tools.0"),
        ([{"type": "web_search"}], "tool_choice.tools.0"),
        ([], "tool_choice"),
    ):
        with pytest.raises(InvalidRequest) as err:
            _parse(tools=[WEATHER], tool_choice={"type": "allowed_tools", "mode": "auto", "tools": tools})
        assert (err.value.param, err.value.code) == (param, "invalid_value")


def test_an_images_detail_is_carried_and_a_bad_one_refused() -> None:
    """It was dropped: a `detail: low` image reached OpenAI as auto (up to ~10x its tokens)."""
    image = {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}
    messages = _task(input=[{"role": "user", "content": [image]}]).request.messages
    assert messages[0].content == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}
    ]
    with pytest.raises(InvalidRequest) as err:
        _parse(input=[{"role": "user", "content": [{**image, "detail": "tiny"}]}])
    assert (err.value.param, err.value.code) == ("input.0.content.0.detail", "invalid_value")


def test_a_function_calls_output_keeps_its_images_and_refuses_what_it_cannot_carry() -> None:
    called = {"type": "function_call", "call_id": "call_1", "name": "screenshot", "arguments": "{}"}
    shot = [
        {"type": "input_text", "text": "The page:"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ]
    result = {"type": "function_call_output", "call_id": "call_1", "output": shot}
    messages = _task(input=[{"role": "user", "content": "Look."}, called, result]).request.messages
    assert messages[2].content == [
        {"type": "text", "text": "The page:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    file = {**result, "output": [{"type": "input_file", "file_id": "file_1"}]}
    with pytest.raises(InvalidRequest) as err:
        _parse(input=[{"role": "user", "content": "Look."}, called, file])
    assert err.value.param == "input.2.output.0.file_id"  # a PDF by id (one by value is carried)


def test_an_input_images_detail_counts_as_openai_counts_it() -> None:
    """`/v1/responses/input_tokens` counts an image by its `detail`, kept on the pipeline's part: low is
    85 tokens; high and auto (or none) 85 + 170 a tile, 765 for 1024x1024."""
    png = media.data_url("image/png", media.png(1024, 1024))
    parts = [
        {"type": "input_image", "image_url": png, "detail": "low"},
        {"type": "input_image", "image_url": png},
        {"type": "input_image", "image_url": png, "detail": "high"},
    ]
    request = _task(input=[{"role": "user", "content": parts}]).request
    assert media_tokens(request.messages, MediaRule("openai", model="gpt-4.1")) == 85 + 765 + 765
    assert media_tokens(request.messages, MediaRule("openai", model="gpt-4.1-mini")) == 3 * round(1024 * 1.62)
