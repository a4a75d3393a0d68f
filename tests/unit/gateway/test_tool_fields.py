"""The request fields beyond text (response_format, tools, tool turns, seed) on the OpenAI face: validated
and carried into the task; tool calls, stop sequences and prompt cache tokens rendered back in each face's
shape; and the failures no model can serve, as the statuses clients act on. The Anthropic face's own
fields (tools, tool blocks, images, cache marks) are in test_anthropic_fields.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
from openai.types import CompletionUsage

from switchyard.common.events import FunctionCall, TaskCompleted, TaskFailed, TaskSubmitted, ToolCall, Usage
from switchyard.common.streaming import Chunk
from switchyard.gateway import completions, messages_render, outcomes
from switchyard.gateway.errors import APIError, InvalidRequest
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit
PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))


def _openai(**fields: object) -> bytes:
    return orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}], **fields})


def test_the_fields_reach_the_task() -> None:
    body = _openai(
        tools=[TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        seed=3,
        parallel_tool_calls=False,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL.model_dump()]},
            {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
        ],
    )
    task = completions.build_task(
        completions.parse_request(body, max_prompt_chars=1000), PRINCIPAL, priority=None
    )
    request = task.request
    assert request.tools and request.tools[0].function.name == "get_weather"
    assert request.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert request.json_schema() == {"type": "object"} and request.seed == 3
    assert request.parallel_tool_calls is False
    assert request.messages[1].tool_calls == [CALL] and request.messages[2].tool_call_id == "call_1"
    again = TaskSubmitted.model_validate_json(task.model_dump_json())  # the event round-trips
    assert again.request == request


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}, "response_format"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "tool_choice"),
        # the function not an object was an AttributeError out of the validator: a 500
        ({"tool_choice": {"type": "function", "function": "get_weather"}}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools.0.function.name"),
    ],
)
def test_malformed_fields_are_a_400_naming_them(fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        completions.parse_request(_openai(**fields), max_prompt_chars=1000)
    assert caught.value.param is not None and caught.value.param.startswith(param)
    assert "Value error" not in caught.value.message  # pydantic's prefix to our validators' words


def test_allowed_tools_narrows_the_tools_offered_to_those_it_names() -> None:
    """Chat's allowed_tools choice (OpenAI SDK `ChatCompletionAllowedToolChoiceParam`): was a 400."""
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    parsed = completions.parse_request(
        _openai(tools=[TOOL, clock], tool_choice=choice), max_prompt_chars=1000
    )
    request = completions.build_task(parsed, PRINCIPAL, priority=None).request
    assert [t.function.name for t in request.tools or []] == ["get_time"]
    assert request.tool_choice == "required"


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ({"mode": "sometimes", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}, ""),
        ({"mode": "auto", "tools": []}, ""),
        ({"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_time"}}]}, ".tools.0"),
        ({"mode": "auto", "tools": [{"type": "custom", "custom": {"name": "get_weather"}}]}, ".tools.0"),
    ],
)
def test_a_malformed_allowed_tools_choice_is_a_400_naming_its_part(
    spec: dict[str, object], param: str
) -> None:
    body = _openai(tools=[TOOL], tool_choice={"type": "allowed_tools", "allowed_tools": spec})
    with pytest.raises(InvalidRequest) as caught:
        completions.parse_request(body, max_prompt_chars=1000)
    assert caught.value.param == f"tool_choice.allowed_tools{param}"


ASKED = {"role": "assistant", "content": None, "tool_calls": [CALL.model_dump()]}


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"tool_choice": "required"}, "tool_choice", "needs `tools`"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
            "tool_choice",
            "'get_time', which is not in `tools`",
        ),
        (  # a tool result nobody asked for
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "x", "content": "1"},
                ]
            },
            "messages.1",
            "must answer a tool call",
        ),
        (  # the right id, but a user turn came in between
            {
                "messages": [
                    {"role": "user", "content": "weather?"},
                    ASKED,
                    {"role": "user", "content": "well?"},
                    {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
                ]
            },
            "messages.3",
            "'call_1'",
        ),
        (  # an id the assistant turn did not use
            {
                "messages": [
                    {"role": "user", "content": "weather?"},
                    ASKED,
                    {"role": "tool", "tool_call_id": "call_9"},
                ]
            },
            "messages.2",
            "'call_9'",
        ),
    ],
)
def test_tool_turns_and_choices_that_openai_refuses_are_a_400(
    fields: dict[str, object], param: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        completions.parse_request(_openai(**fields), max_prompt_chars=1000)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, param, "invalid_value")
    assert says in caught.value.message


def test_several_results_answer_one_assistant_turn() -> None:
    two = [CALL.model_dump(), {**CALL.model_dump(), "id": "call_2"}]
    body = _openai(
        tools=[TOOL],
        tool_choice="required",
        messages=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": two},
            {"role": "tool", "tool_call_id": "call_2", "content": "25C"},
            {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
        ],
    )
    assert len(completions.parse_request(body, max_prompt_chars=1000).messages) == 4


def _done(**kw: object) -> TaskCompleted:
    fields: dict[str, object] = dict(
        task_id="t1",
        tenant_id="acme",
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="fast",
        content="",
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=5, completion_tokens=7),
        tool_calls=[CALL],
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )
    fields.update(kw)
    return TaskCompleted(**fields)  # type: ignore[arg-type]


def test_tool_calls_render_in_both_faces() -> None:
    task = completions.build_task(
        completions.parse_request(_openai(), max_prompt_chars=1000), PRINCIPAL, priority=None
    )
    choice = orjson.loads(completions.completion_json(task, _done()))["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [CALL.model_dump(mode="json")]
    message = orjson.loads(messages_render.message_json(task, _done()))
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    odd = [CALL.model_copy(update={"function": FunctionCall(name="f", arguments=a)}) for a in ("null", "[1]")]
    inputs = [
        b["input"] for b in orjson.loads(messages_render.message_json(task, _done(tool_calls=odd)))["content"]
    ]
    assert inputs == [{}, {"input": [1]}]  # always an object, as Anthropic's
    plain = orjson.loads(
        messages_render.message_json(task, _done(content="Hi", finish_reason="stop", tool_calls=None))
    )
    assert plain["content"] == [{"type": "text", "text": "Hi"}]
    assert (plain["stop_reason"], plain["stop_sequence"]) == ("end_turn", None)


async def test_the_anthropic_face_names_the_stop_sequence_that_ended_an_answer() -> None:
    task = completions.build_task(
        completions.parse_request(_openai(), max_prompt_chars=1000), PRINCIPAL, priority=None
    )
    done = _done(content="1, 2", finish_reason="stop", tool_calls=None, stop_sequence=", 3")
    message = orjson.loads(messages_render.message_json(task, done))
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", ", 3")

    async def nothing_more() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
        return
        yield

    events = [e async for e in messages_render.stream_events(task, [done], nothing_more(), timeout_s=5)]
    last_delta = next(orjson.loads(e.split(b"data: ", 1)[1]) for e in events if b"message_delta" in e[:30])
    assert last_delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": ", 3"}


async def test_prompt_cache_tokens_reach_clients_in_each_faces_terms() -> None:
    task = completions.build_task(
        completions.parse_request(_openai(), max_prompt_chars=1000), PRINCIPAL, priority=None
    )
    usage = Usage(prompt_tokens=1812, completion_tokens=7, cache_read_tokens=1500, cache_write_tokens=300)
    done = _done(content="Hi", finish_reason="stop", tool_calls=None, usage=usage)
    # OpenAI: prompt_tokens counts everything, cache hits and writes in prompt_tokens_details (writes:
    # `cache_write_tokens`, openai 3.54.0's PromptTokensDetails, "prompt tokens written to cache"; they
    # were left out)
    said = orjson.loads(completions.completion_json(task, done))["usage"]
    assert said == {
        "prompt_tokens": 1812,
        "completion_tokens": 7,
        "total_tokens": 1819,
        "prompt_tokens_details": {"cached_tokens": 1500, "cache_write_tokens": 300},
    }
    details = CompletionUsage.model_validate(said).prompt_tokens_details
    assert details is not None and (details.cached_tokens, details.cache_write_tokens) == (1500, 300)
    written = Usage(prompt_tokens=1812, completion_tokens=7, cache_write_tokens=1800)  # a first call
    first = _done(content="Hi", finish_reason="stop", tool_calls=None, usage=written)
    assert orjson.loads(completions.completion_json(task, first))["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 0,
        "cache_write_tokens": 1800,
    }
    # Anthropic: input_tokens leaves out cache reads and writes, which have fields of their own
    anthropic_usage = {
        "input_tokens": 12,
        "output_tokens": 7,
        "cache_read_input_tokens": 1500,
        "cache_creation_input_tokens": 300,
    }
    assert orjson.loads(messages_render.message_json(task, done))["usage"] == anthropic_usage

    async def nothing_more() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
        return
        yield

    events = [e async for e in messages_render.stream_events(task, [done], nothing_more(), timeout_s=5)]
    last_delta = next(orjson.loads(e.split(b"data: ", 1)[1]) for e in events if b"message_delta" in e[:30])
    assert last_delta["usage"] == anthropic_usage
    chunks = [
        e
        async for e in completions.stream_events(
            task, [done], nothing_more(), timeout_s=5, include_usage=True
        )
    ]
    usage_chunk = orjson.loads(chunks[-2].split(b"data: ", 1)[1])
    assert usage_chunk["usage"]["prompt_tokens_details"] == {"cached_tokens": 1500, "cache_write_tokens": 300}
    # no cache: the usage objects are as before, without the cache fields
    plain = _done(content="Hi", finish_reason="stop", tool_calls=None)
    assert "prompt_tokens_details" not in orjson.loads(completions.completion_json(task, plain))["usage"]
    assert orjson.loads(messages_render.message_json(task, plain))["usage"] == {
        "input_tokens": 5,
        "output_tokens": 7,
    }


@pytest.mark.parametrize(
    ("code", "status"),
    [("capability_unavailable", 400), ("context_length_exceeded", 400), ("no_provider_available", 503)],
)
def test_what_no_model_can_serve_is_the_clients_to_change_unless_time_can_help(
    code: str, status: int
) -> None:
    """SDKs retry a 503 and not a 400: a task no available model has the capabilities for gets a 400."""
    failed = TaskFailed(
        task_id="t1", tenant_id="acme", error_code=code, error_message="why", failed_at=datetime.now(UTC)
    )
    with pytest.raises(APIError) as caught:
        outcomes.raise_for_failure(failed)
    assert (caught.value.status, caught.value.code) == (status, code)


@pytest.mark.parametrize(("retry_after_s", "header"), [(44.2, "45"), (None, None)])
def test_every_candidate_behind_an_open_breaker_is_busy_with_the_cool_down_left(
    retry_after_s: float | None, header: str | None
) -> None:
    """A 502 made clients retry at once into the same refusal (Codex: 30 requests in 30 s for one turn);
    a 503 with Retry-After has them wait for the breaker's cool-down."""
    failed = TaskFailed(
        task_id="t1",
        tenant_id="acme",
        error_code="provider_circuit_open",
        error_message="openai/gpt-4o: circuit open after repeated failures",
        failed_at=datetime.now(UTC),
        retry_after_s=retry_after_s,
    )
    with pytest.raises(APIError) as caught:
        outcomes.raise_for_failure(failed)
    assert (caught.value.status, caught.value.code) == (503, "provider_circuit_open")
    assert caught.value.headers.get("Retry-After") == header
