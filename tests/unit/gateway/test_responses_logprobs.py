"""Token log probabilities on the Responses face: `include: ["message.output_text.logprobs"]` (with
`top_logprobs`) asks the task for them, and they come back as the output_text part's `logprobs`, whole and
per streamed delta, in the shapes OpenAI's SDK reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from switchyard.common.events import (
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from switchyard.common.streaming import Chunk
from switchyard.gateway import completions, responses, responses_render, responses_stream
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.tenants import Principal

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
INCLUDE = ["message.output_text.logprobs"]
EVENT = TypeAdapter(ResponseStreamEvent)

# "Paris" in two tokens, and an ellipsis whose first token holds part of a character (its own bytes).
PAR = TokenLogprob(
    token="Par",
    logprob=-0.02,
    top_logprobs=[TopLogprob(token="Par", logprob=-0.02), TopLogprob(token="Lyon", logprob=-4.1)],
)
IS = TokenLogprob(token="is", logprob=-0.001, top_logprobs=[TopLogprob(token="is", logprob=-0.001)])
PART = TokenLogprob(token="\ufffd", logprob=-1.5, bytes=[226, 128])
PAR_JSON = {
    "token": "Par",
    "logprob": -0.02,
    "bytes": [80, 97, 114],
    "top_logprobs": [
        {"token": "Par", "logprob": -0.02, "bytes": [80, 97, 114]},
        {"token": "Lyon", "logprob": -4.1, "bytes": [76, 121, 111, 110]},
    ],
}
IS_JSON = {
    "token": "is",
    "logprob": -0.001,
    "bytes": [105, 115],
    "top_logprobs": [{"token": "is", "logprob": -0.001, "bytes": [105, 115]}],
}
PART_JSON = {"token": "\ufffd", "logprob": -1.5, "bytes": [226, 128], "top_logprobs": []}


def _parse(**fields: Any) -> Any:
    body = {"model": "auto", "input": "What is the capital of France?", **fields}
    return responses.parse_request(orjson.dumps(body), max_prompt_chars=10_000)


def _task(**fields: Any) -> TaskSubmitted:
    return completions.build_task(_parse(**fields), PRINCIPAL, priority=None)


def test_only_the_logprobs_include_entry_asks_the_task_for_them() -> None:
    request = _task(include=["reasoning.encrypted_content", *INCLUDE], top_logprobs=5).chat()
    assert (request.logprobs, request.top_logprobs) == (True, 5)
    # without `top_logprobs`: each token's log probability, no alternatives
    request = _task(include=INCLUDE).chat()
    assert (request.logprobs, request.top_logprobs) == (True, 0)
    # `top_logprobs` without the entry is accepted, as OpenAI accepts it, and asks for nothing; other
    # entries ask for nothing here
    for fields in ({"top_logprobs": 5}, {"include": ["reasoning.encrypted_content"], "top_logprobs": 0}):
        request = _task(**fields).chat()
        assert (request.logprobs, request.top_logprobs) == (False, None)


@pytest.mark.parametrize(
    ("top_logprobs", "code"),
    [(21, "invalid_value"), (-1, "invalid_value"), ("3", "invalid_type")],
)
def test_top_logprobs_out_of_range_is_a_400_naming_it(top_logprobs: Any, code: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        _parse(include=INCLUDE, top_logprobs=top_logprobs)
    assert (err.value.status, err.value.param, err.value.code) == (400, "top_logprobs", code)


def _done(**kw: Any) -> TaskCompleted:
    fields: dict[str, Any] = dict(
        task_id="t1",
        tenant_id="acme",
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="fast",
        content="Paris\u2026",
        finish_reason="stop",
        usage=Usage(prompt_tokens=20, completion_tokens=3),
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )
    fields.update(kw)
    return TaskCompleted(**fields)


def _text_part(body: dict[str, Any]) -> dict[str, Any]:
    [message] = [i for i in body["output"] if i["type"] == "message"]
    part: dict[str, Any] = message["content"][0]
    return part


def test_an_answers_tokens_are_its_output_text_logprobs_every_one_with_its_bytes() -> None:
    task = _task(include=INCLUDE, top_logprobs=2)
    body = orjson.loads(responses_render.response_json(task, _done(logprobs=[PAR, IS, PART])))
    assert _text_part(body)["logprobs"] == [PAR_JSON, IS_JSON, PART_JSON]
    read = Response.model_validate(body)  # as OpenAI's SDK reads it
    [entries] = [
        c.logprobs
        for item in read.output
        if item.type == "message"
        for c in item.content
        if c.type == "output_text"
    ]
    assert entries is not None and [(e.token, e.bytes) for e in entries] == [
        ("Par", [80, 97, 114]),
        ("is", [105, 115]),
        ("\ufffd", [226, 128]),
    ]
    assert [t.token for t in entries[0].top_logprobs] == ["Par", "Lyon"]


@pytest.mark.parametrize("tokens", [None, []])
def test_an_answer_without_logprobs_has_an_empty_list(tokens: list[TokenLogprob] | None) -> None:
    # None: not asked, or withheld (the output guardrails changed the text); []: asked, none given
    body = orjson.loads(responses_render.response_json(_task(), _done(logprobs=tokens)))
    assert _text_part(body)["logprobs"] == []
    Response.model_validate(body)


async def _nothing_more() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    return
    yield


async def _events(task: TaskSubmitted, head: list[Chunk | TaskCompleted]) -> list[dict[str, Any]]:
    raw = [e async for e in responses_stream.stream_events(task, head, _nothing_more(), timeout_s=5)]
    events = [orjson.loads(e.split(b"data: ", 1)[1]) for e in raw]
    for event in events:
        EVENT.validate_python(event)  # each one as OpenAI's SDK reads it
    return events


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


async def test_each_streamed_delta_carries_its_own_tokens_and_the_done_events_all_of_them() -> None:
    task = _task(stream=True, include=INCLUDE, top_logprobs=2)
    head: list[Chunk | TaskCompleted] = [
        Chunk(seq=0, delta="Par", model="openai/gpt-4o-mini", logprobs=[PAR]),
        Chunk(seq=1, delta="is\u2026", logprobs=[IS, PART]),
        Chunk(seq=2, done=True, finish_reason="stop"),
        _done(logprobs=[PAR, IS, PART]),
    ]
    events = await _events(task, head)
    deltas = _of(events, "response.output_text.delta")
    assert [(d["delta"], d["logprobs"]) for d in deltas] == [
        ("Par", [PAR_JSON]),
        ("is\u2026", [IS_JSON, PART_JSON]),
    ]
    [added] = _of(events, "response.content_part.added")
    assert added["part"]["logprobs"] == []
    [text_done] = _of(events, "response.output_text.done")
    assert text_done["logprobs"] == [PAR_JSON, IS_JSON, PART_JSON]
    [part_done] = _of(events, "response.content_part.done")
    assert part_done["part"]["logprobs"] == [PAR_JSON, IS_JSON, PART_JSON]
    item_done = _of(events, "response.output_item.done")[-1]
    assert item_done["item"]["content"][0]["logprobs"] == [PAR_JSON, IS_JSON, PART_JSON]
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert _text_part(completed["response"])["logprobs"] == [PAR_JSON, IS_JSON, PART_JSON]


async def test_an_answer_streamed_whole_is_one_delta_with_all_its_tokens() -> None:
    # what a stream answered whole (output guardrails on) or with no text chunks gives
    task = _task(stream=True, include=INCLUDE)
    events = await _events(task, [_done(logprobs=[PAR, IS, PART])])
    [delta] = _of(events, "response.output_text.delta")
    assert (delta["delta"], delta["logprobs"]) == ("Paris\u2026", [PAR_JSON, IS_JSON, PART_JSON])
    [text_done] = _of(events, "response.output_text.done")
    assert text_done["logprobs"] == [PAR_JSON, IS_JSON, PART_JSON]


async def test_a_stream_not_asked_for_logprobs_has_empty_lists() -> None:
    task = _task(stream=True)
    head: list[Chunk | TaskCompleted] = [Chunk(seq=0, delta="Paris\u2026"), Chunk(seq=1, done=True), _done()]
    events = await _events(task, head)
    assert [d["logprobs"] for d in _of(events, "response.output_text.delta")] == [[]]
    assert _of(events, "response.output_text.done")[0]["logprobs"] == []
    assert _text_part(events[-1]["response"])["logprobs"] == []


async def test_tokens_that_come_without_text_are_a_delta_of_their_own() -> None:
    """A chunk with tokens and no text (the end of a character cut between tokens, a last token after the
    text) is still streamed: the client gets every token the result has."""
    task = _task(stream=True, include=INCLUDE)
    head: list[Chunk | TaskCompleted] = [
        Chunk(seq=0, delta="Paris", model="openai/gpt-4o-mini", logprobs=[PAR, IS]),
        Chunk(seq=1, delta="", logprobs=[PART]),
        Chunk(seq=2, done=True, finish_reason="length"),
        _done(logprobs=[PAR, IS, PART]),
    ]
    deltas = _of(await _events(task, head), "response.output_text.delta")
    assert [(d["delta"], d["logprobs"]) for d in deltas] == [
        ("Paris", [PAR_JSON, IS_JSON]),
        ("", [PART_JSON]),
    ]
