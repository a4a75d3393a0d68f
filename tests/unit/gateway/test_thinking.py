"""Extended thinking on both faces: what a request asks for, the thinking blocks a client sends back, and
how an answer's thinking is rendered (whole and streamed)."""

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
from switchyard.common.streaming import Chunk
from switchyard.gateway import completions, messages, messages_render, outcomes
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.messages_render import stream_events
from switchyard.gateway.taskapi.models import TaskState
from switchyard.gateway.taskapi.store import with_outcome
from switchyard.gateway.tenants import Principal

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
SIGNED = {"type": "thinking", "thinking": "The user wants Paris weather.", "signature": "EqQBCkgIARABGAIi"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}
TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}


def _anthropic(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "model": "auto",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "x"}],
    }
    return orjson.dumps({**body, **fields})


def _task(body: bytes) -> TaskSubmitted:
    return completions.build_task(
        messages.parse_request(body, max_prompt_chars=10_000), PRINCIPAL, priority=None
    )


def test_a_thinking_budget_reaches_the_task() -> None:
    task = _task(_anthropic(thinking={"type": "enabled", "budget_tokens": 2048}))
    assert task.request.reasoning == Reasoning(budget_tokens=2048)
    assert task.request.reasoning.level() == "low" and task.request.reasoning.budget() == 2048
    assert _task(_anthropic(thinking={"type": "disabled"})).request.reasoning == Reasoning(effort="none")
    assert _task(_anthropic()).request.reasoning is None


@pytest.mark.parametrize(
    ("thinking", "param", "says"),
    [
        ({"type": "enabled"}, "thinking.budget_tokens", "Field required"),
        ({"type": "enabled", "budget_tokens": 4096}, "thinking.budget_tokens", "greater than"),
        ({"type": "enabled", "budget_tokens": 512}, "thinking.budget_tokens", "1024"),
        ({"type": "enabled", "budget_tokens": "2048"}, "thinking.budget_tokens", ""),
        ({"type": "adaptive", "budget_tokens": 2048}, "thinking.budget_tokens", "only `enabled`"),
        ({"type": "sometimes"}, "thinking.type", ""),
        ({"type": "adaptive", "display": "full"}, "thinking.display", ""),
    ],
)
def test_thinking_that_anthropic_would_refuse_is_a_400(
    thinking: dict[str, Any], param: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        messages.parse_request(_anthropic(thinking=thinking), max_prompt_chars=1000)
    assert err.value.status == 400 and err.value.param == param and says in err.value.message


def test_adaptive_thinking_and_its_effort_reach_the_task() -> None:
    """Claude Code's thinking on Claude 4.6 and later: adaptive, at an effort, its display choice kept."""
    adaptive = {"type": "adaptive", "display": "summarized"}
    task = _task(_anthropic(thinking=adaptive, output_config={"effort": "xhigh"}))
    assert task.request.reasoning == Reasoning(adaptive=True, effort="xhigh", display="summarized")
    assert _task(_anthropic(thinking={"type": "adaptive"})).request.reasoning == Reasoning(adaptive=True)
    budget = _task(
        _anthropic(thinking={"type": "enabled", "budget_tokens": 2048}, output_config={"effort": "low"})
    )
    assert budget.request.reasoning == Reasoning(budget_tokens=2048, effort="low")
    # thinking off (`between_tools` only adds progress notes), said out loud, whatever the effort
    for off in ({"type": "between_tools"}, {"type": "disabled"}):
        off_task = _task(_anthropic(thinking=off, output_config={"effort": "low"}))
        assert off_task.request.reasoning == Reasoning(effort="none")
    # an effort alone (Claude 5 thinks by default, at it): the task's effort
    assert _task(_anthropic(output_config={"effort": "low"})).request.reasoning == Reasoning(effort="low")
    with pytest.raises(InvalidRequest) as err:
        messages.parse_request(_anthropic(output_config={"effort": "extreme"}), max_prompt_chars=1000)
    assert err.value.param == "output_config.effort"


def test_structured_outputs_become_a_json_schema_answer() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    task = _task(_anthropic(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert task.request.json_schema() == schema and task.request.json_format() is not None
    with pytest.raises(InvalidRequest) as err:
        messages.parse_request(_anthropic(output_config={"format": {"type": "xml"}}), max_prompt_chars=1000)
    assert err.value.param is not None and err.value.param.startswith("output_config.format")


def test_thinking_blocks_sent_back_stay_with_their_assistant_turn() -> None:
    turns = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [SIGNED, REDACTED, {"type": "text", "text": "Checking."}, TOOL_USE]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]},
    ]
    task = _task(_anthropic(messages=turns, thinking={"type": "enabled", "budget_tokens": 1024}))
    assistant = task.request.messages[1]
    assert assistant.thinking == [
        ThinkingBlock(thinking=SIGNED["thinking"], signature=SIGNED["signature"]),
        ThinkingBlock(type="redacted_thinking", data=REDACTED["data"]),
    ]
    assert assistant.text() == "Checking." and assistant.tool_calls is not None
    # the thinking is not prompt text: not classified, not counted as the prompt
    assert SIGNED["thinking"] not in task.request.prompt_text()


@pytest.mark.parametrize(
    ("turn", "says", "param"),
    [
        ({"role": "user", "content": [SIGNED]}, "belong to assistant turns", "messages.0.content.0.type"),
        (
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]},
            "signature",
            "messages.1.content.0",
        ),
        ({"role": "assistant", "content": [{"type": "redacted_thinking"}]}, "data", "messages.1.content.0"),
        (
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [SIGNED]}],
            },
            "['thinking'] are not served here",
            "messages.0.content.0.content.0.type",
        ),
    ],
)
def test_malformed_thinking_blocks_are_a_400(turn: dict[str, Any], says: str, param: str) -> None:
    turns = [{"role": "user", "content": "x"}, turn] if turn["role"] == "assistant" else [turn]
    with pytest.raises(InvalidRequest) as err:
        messages.parse_request(_anthropic(messages=turns), max_prompt_chars=1000)
    assert err.value.param == param and says in err.value.message


@pytest.mark.parametrize(
    ("effort", "reasoning"),
    [
        ("high", Reasoning(effort="high")),
        ("xhigh", Reasoning(effort="xhigh")),
        ("none", Reasoning(effort="none")),  # said out loud: GPT-5.1 and later reason unless told so
        (None, None),
    ],
)
def test_openai_reasoning_effort_reaches_the_task(effort: str | None, reasoning: Reasoning | None) -> None:
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": "x"}]}
    if effort is not None:
        body["reasoning_effort"] = effort
    parsed = completions.parse_request(orjson.dumps(body), max_prompt_chars=1000)
    assert completions.build_task(parsed, PRINCIPAL, priority=None).request.reasoning == reasoning


def test_an_unknown_reasoning_effort_is_a_400() -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "maximal"}
    with pytest.raises(InvalidRequest) as err:
        completions.parse_request(orjson.dumps(body), max_prompt_chars=1000)
    assert err.value.param == "reasoning_effort"


def test_reasoning_levels_and_budgets_map_both_ways() -> None:
    assert [Reasoning(effort=e).budget() for e in ("minimal", "low", "medium", "high")] == [
        0,
        1024,
        8192,
        24576,
    ]
    assert [Reasoning(budget_tokens=b).level() for b in (1024, 4095, 4096, 16383, 16384, 31999)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]


def _done(**kw: Any) -> TaskCompleted:
    fields: dict[str, Any] = dict(
        task_id="t1",
        tenant_id="acme",
        model="anthropic/claude-sonnet-4-6",
        provider="anthropic",
        tier="standard",
        content="It is 18C.",
        finish_reason="stop",
        usage=Usage(prompt_tokens=5, completion_tokens=70),
        thinking=[
            ThinkingBlock(thinking=SIGNED["thinking"], signature=SIGNED["signature"]),
            ThinkingBlock(type="redacted_thinking", data=REDACTED["data"]),
        ],
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )
    fields.update(kw)
    return TaskCompleted(**fields)


def test_an_answers_thinking_renders_in_both_faces() -> None:
    task = _task(_anthropic(thinking={"type": "enabled", "budget_tokens": 1024}))
    message = orjson.loads(messages_render.message_json(task, _done()))
    assert message["content"] == [SIGNED, REDACTED, {"type": "text", "text": "It is 18C."}]
    openai = orjson.loads(completions.completion_json(task, _done()))["choices"][0]["message"]
    assert openai == {
        "role": "assistant",
        "content": "It is 18C.",
        "reasoning_content": SIGNED["thinking"],  # redacted thinking has no text to show
        "thinking_blocks": [SIGNED, REDACTED],  # LiteLLM's field: the blocks, for a client to send back
    }
    assert (
        "reasoning_content"
        not in orjson.loads(completions.completion_json(task, _done(thinking=None)))["choices"][0]["message"]
    )


def _stream(thinking: str = "The user wants", rest: str = " Paris weather.") -> list[Chunk | TaskCompleted]:
    return [
        Chunk(seq=0, thinking=thinking, model="anthropic/claude-sonnet-4-6"),
        Chunk(seq=1, thinking=rest),
        Chunk(seq=2, signature=SIGNED["signature"]),
        Chunk(seq=3, redacted=REDACTED["data"]),
        Chunk(seq=4, delta="It is "),
        Chunk(seq=5, delta="18C."),
        Chunk(seq=6, done=True, finish_reason="stop"),
    ]


async def _nothing_more() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    return
    yield


def _events(raw: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(e.split(b"data: ", 1)[1]) for e in raw]


async def test_streamed_thinking_is_anthropics_block_sequence() -> None:
    task = _task(_anthropic(stream=True, thinking={"type": "enabled", "budget_tokens": 1024}))
    head = [*_stream(), _done(tool_calls=None)]
    events = _events([e async for e in stream_events(task, head, _nothing_more(), timeout_s=5)])
    shape = [
        (e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type"))
        for e in events
    ]
    assert shape == [
        ("message_start", None, None),
        ("ping", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "redacted_thinking"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "text"),
        ("content_block_delta", 2, "text_delta"),
        ("content_block_delta", 2, "text_delta"),
        ("content_block_stop", 2, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert (
        "".join(e["delta"].get("thinking", "") for e in events if e["type"] == "content_block_delta")
        == (SIGNED["thinking"])
    )
    assert events[5]["delta"]["signature"] == SIGNED["signature"]
    assert events[7]["content_block"] == REDACTED


async def test_streamed_thinking_before_tool_calls_numbers_the_blocks_on() -> None:
    task = _task(_anthropic(stream=True))
    head: list[Chunk | TaskCompleted] = [
        Chunk(seq=0, thinking="Need the weather."),
        Chunk(seq=1, signature="sig"),
        Chunk(seq=2, done=True, finish_reason="tool_calls"),
        _done(content="", finish_reason="tool_calls", tool_calls=[_call()]),
    ]
    events = _events([e async for e in stream_events(task, head, _nothing_more(), timeout_s=5)])
    starts = [(e["index"], e["content_block"]["type"]) for e in events if e["type"] == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "tool_use")]  # no empty text block between them


def _call() -> ToolCall:
    return ToolCall(id="toolu_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))


async def test_streamed_thinking_is_reasoning_content_on_the_openai_face() -> None:
    task = _task(_anthropic(stream=True))
    head = [*_stream(), _done(tool_calls=None)]
    raw = [
        e
        async for e in completions.stream_events(
            task, head, _nothing_more(), timeout_s=5, include_usage=False
        )
    ]
    deltas = [orjson.loads(e[6:])["choices"][0]["delta"] for e in raw[:-1]]
    assert deltas[0] == {"role": "assistant", "reasoning_content": "The user wants"}
    assert deltas[1] == {"reasoning_content": " Paris weather."}
    assert deltas[2:4] == [{"thinking_blocks": [SIGNED]}, {"thinking_blocks": [REDACTED]}]  # each block whole
    assert deltas[4:6] == [{"content": "It is "}, {"content": "18C."}]
    assert raw[-1] == b"data: [DONE]\n\n"


async def test_the_stream_starts_at_the_first_thinking_not_the_first_text() -> None:
    """The HTTP response (and the client's first byte) comes with the first reasoning chunk."""

    class Client:
        def stream(
            self, task: TaskSubmitted, **_: object
        ) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
            async def items() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
                for item in _stream():
                    yield item

            return items()

    task = _task(_anthropic(stream=True))
    head, rest = await outcomes.open_stream(Client(), task, timeout_s=5)  # type: ignore[arg-type]
    assert head == [_stream()[0]]
    await rest.aclose()  # type: ignore[attr-defined]


def test_the_task_api_keeps_an_answers_thinking_with_its_result() -> None:
    now = datetime.now(UTC)
    queued = TaskState(
        id="t1", tenant_id="acme", status="queued", model="auto", created_at=now, updated_at=now
    )
    done = with_outcome(queued, _done())
    assert done.result is not None and done.result.thinking == _done().thinking
    stored = TaskState.model_validate_json(done.model_dump_json())  # as the KV bucket keeps it
    assert stored.result is not None and stored.result.thinking == _done().thinking


async def test_an_answer_sent_whole_into_a_stream_keeps_its_thinking() -> None:
    """A cache replay, or an output guardrail's whole answer, streams from the result alone."""
    task = _task(_anthropic(stream=True))
    events = _events([e async for e in stream_events(task, [_done()], _nothing_more(), timeout_s=5)])
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "redacted_thinking", "text"]
    assert starts[1] == REDACTED
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert deltas[:2] == [
        {"type": "thinking_delta", "thinking": SIGNED["thinking"]},
        {"type": "signature_delta", "signature": SIGNED["signature"]},
    ]
    raw = [
        e
        async for e in completions.stream_events(
            task, [_done()], _nothing_more(), timeout_s=5, include_usage=False
        )
    ]
    first, second = (orjson.loads(e[6:])["choices"][0]["delta"] for e in raw[:2])
    assert first == {
        "role": "assistant",
        "reasoning_content": SIGNED["thinking"],
        "thinking_blocks": [SIGNED, REDACTED],
    }
    assert second == {"content": "It is 18C."}


def test_thinking_blocks_sent_back_on_the_openai_face_reach_their_turn() -> None:
    def body(assistant: dict[str, Any]) -> bytes:
        turns = [{"role": "user", "content": "Weather?"}, assistant, {"role": "user", "content": "And Rome?"}]
        return orjson.dumps({"model": "auto", "messages": turns})

    parsed = completions.parse_request(
        body({"role": "assistant", "content": "18C.", "thinking_blocks": [SIGNED, REDACTED]}),
        max_prompt_chars=1000,
    )
    assistant = parsed.messages[1]
    assert assistant.thinking == [
        ThinkingBlock(thinking=SIGNED["thinking"], signature=SIGNED["signature"]),
        ThinkingBlock(type="redacted_thinking", data=REDACTED["data"]),
    ]
    assert "thinking_blocks" not in (assistant.model_extra or {})  # carried as thinking, not as an extra
    for bad in ([{"type": "thinking", "thinking": "no signature"}], "not a list", [{"type": "other"}]):
        with pytest.raises(InvalidRequest) as err:
            completions.parse_request(
                body({"role": "assistant", "content": "x", "thinking_blocks": bad}), max_prompt_chars=1000
            )
        assert err.value.param == "messages.1.thinking_blocks"
