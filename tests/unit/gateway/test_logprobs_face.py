"""Token log probabilities on the chat and legacy completions faces: asked for (`logprobs`, `top_logprobs`;
the legacy face's `logprobs: N`) and carried into the task, or refused as OpenAI refuses them; returned in
each face's shape, whole and streamed, for every answer of several; withheld from an answer the output
guardrails change; kept with a task API result; never served from the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from switchyard.common.events import (
    ChatRequest,
    Choice,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from switchyard.common.streaming import Chunk
from switchyard.gateway import completions, legacy
from switchyard.gateway.cache.exact import ExactStore
from switchyard.gateway.cache.models import CacheConfig, Directive
from switchyard.gateway.cache.service import Configs, ResponseCache
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.guardrails.chain import GuardrailPolicy
from switchyard.gateway.guardrails.models import GuardrailConfig
from switchyard.gateway.guardrails.service import Guardrails
from switchyard.gateway.taskapi.models import TaskState
from switchyard.gateway.taskapi.store import with_outcome
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
# "Paris" as two tokens, the first with two alternatives; " —" as a token whose bytes end inside the dash
# (U+2014, three bytes) and the one that completes it.
PAR = TokenLogprob(
    token="Par",
    logprob=-0.25,
    top_logprobs=[TopLogprob(token="Par", logprob=-0.25), TopLogprob(token="Lon", logprob=-1.5)],
)
IS = TokenLogprob(token="is", logprob=-0.01)
DASH_START = TokenLogprob(token=" \\xe2\\x80", logprob=-2.0, bytes=[32, 0xE2, 0x80])
DASH_END = TokenLogprob(token="\\x94", logprob=-0.5, bytes=[0x94])
OSLO = [TokenLogprob(token="Oslo", logprob=-0.7)]


def _chat(**fields: Any) -> TaskSubmitted:
    body = {"model": "auto", "messages": [{"role": "user", "content": "Name a city."}], **fields}
    parsed = completions.parse_request(orjson.dumps(body), max_prompt_chars=1_000)
    return completions.build_task(parsed, PRINCIPAL, priority=None)


def _legacy(**fields: Any) -> TaskSubmitted:
    body = {"model": "auto", "prompt": "Name a city.", **fields}
    parsed = legacy.parse_request(orjson.dumps(body), max_prompt_chars=1_000)
    return completions.build_task(parsed, PRINCIPAL, priority=None)


def _done(**kw: Any) -> TaskCompleted:
    fields: dict[str, Any] = {
        "task_id": "t1",
        "tenant_id": "acme",
        "model": "openai/gpt-6-luna",
        "provider": "openai",
        "tier": "fast",
        "content": "Paris",
        "finish_reason": "stop",
        "usage": Usage(prompt_tokens=10, completion_tokens=2),
        "attempts": 1,
        "latency_ms": 5.0,
        "completed_at": datetime(2026, 12, 5, tzinfo=UTC),
        "logprobs": [PAR, IS],
    }
    return TaskCompleted(**{**fields, **kw})


async def _items(*items: Chunk | TaskCompleted) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    for item in items:
        yield item


def _sse(events: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(e[6:]) for e in events if e.startswith(b"data: {")]


def test_the_chat_face_carries_logprobs_and_top_logprobs_into_the_task() -> None:
    asked = _chat(logprobs=True, top_logprobs=3).chat()
    assert (asked.logprobs, asked.top_logprobs) == (True, 3)
    assert (
        _chat(logprobs=True).chat().top_logprobs,
        _chat(logprobs=True, top_logprobs=0).chat().logprobs,
    ) == (
        None,
        True,
    )
    # the off values clients send pass, and ask for nothing
    for off in ({}, {"logprobs": False}, {"logprobs": None, "top_logprobs": None}):
        request = _chat(**off).chat()
        assert (request.logprobs, request.top_logprobs) == (False, None)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"top_logprobs": 3}, "invalid_value"),
        ({"top_logprobs": 0}, "invalid_value"),
        ({"logprobs": False, "top_logprobs": 2}, "invalid_value"),
        ({"logprobs": True, "top_logprobs": 21}, "invalid_value"),
        ({"logprobs": True, "top_logprobs": -1}, "invalid_value"),
        ({"logprobs": True, "top_logprobs": "3"}, "invalid_type"),
    ],
)
def test_top_logprobs_needs_logprobs_true_and_at_most_twenty(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        _chat(**fields)
    assert (err.value.status, err.value.code, err.value.param) == (400, code, "top_logprobs")
    if "logprobs" not in fields or fields["logprobs"] is False:
        assert "logprobs: true" in err.value.message


def test_a_chat_completion_gives_each_answer_its_own_logprobs_in_openais_shape() -> None:
    others = [
        Choice(content="Oslo", finish_reason="stop", logprobs=OSLO),
        Choice(content="Rome", finish_reason="stop"),
    ]
    task = _chat(logprobs=True, top_logprobs=2, n=3)
    body = orjson.loads(completions.completion_json(task, _done(other_choices=others)))
    first, second, third = (c["logprobs"] for c in body["choices"])
    assert first == {
        "content": [
            {
                "token": "Par",
                "logprob": -0.25,
                "bytes": [80, 97, 114],
                "top_logprobs": [
                    {"token": "Par", "logprob": -0.25, "bytes": [80, 97, 114]},
                    {"token": "Lon", "logprob": -1.5, "bytes": [76, 111, 110]},
                ],
            },
            {"token": "is", "logprob": -0.01, "bytes": [105, 115], "top_logprobs": []},
        ],
        "refusal": None,
    }
    assert second == {
        "content": [{"token": "Oslo", "logprob": -0.7, "bytes": [79, 115, 108, 111], "top_logprobs": []}],
        "refusal": None,
    }
    assert third is None  # withheld from that answer (an output guardrail changed it)
    # a token's own bytes where they are not its text's UTF-8
    partial = orjson.loads(completions.completion_json(task, _done(logprobs=[DASH_START])))
    assert partial["choices"][0]["logprobs"]["content"][0]["bytes"] == [32, 0xE2, 0x80]
    plain = orjson.loads(completions.completion_json(_chat(), _done(logprobs=None)))
    assert plain["choices"][0]["logprobs"] is None


async def test_each_streamed_chunk_carries_its_tokens_and_other_answers_theirs_whole() -> None:
    task = _chat(logprobs=True, n=2, stream=True)
    head: list[Chunk | TaskCompleted] = [
        Chunk(seq=0, thinking="Hmm.", model="openai/gpt-6-luna"),
        Chunk(seq=1, delta="Par", logprobs=[PAR]),
    ]
    rest = _items(
        Chunk(seq=2, delta="is", logprobs=[IS]),
        Chunk(seq=3, done=True, finish_reason="stop"),
        _done(other_choices=[Choice(content="Oslo", finish_reason="stop", logprobs=OSLO)]),
    )
    events = [e async for e in completions.stream_events(task, head, rest, timeout_s=5, include_usage=False)]
    choices = [c for body in _sse(events) for c in body["choices"]]
    tokens = [
        [t["token"] for t in c["logprobs"]["content"]] if c["logprobs"] is not None else None for c in choices
    ]
    texts = [c["delta"].get("content") or c["delta"].get("reasoning_content") for c in choices]
    assert list(zip([c["index"] for c in choices], texts, tokens, strict=True)) == [
        (0, "Hmm.", None),  # thinking has no tokens
        (0, "Par", ["Par"]),
        (0, "is", ["is"]),
        (0, None, None),  # the finish
        (1, "Oslo", ["Oslo"]),
        (1, None, None),
    ]
    assert choices[1]["logprobs"]["content"][0]["top_logprobs"][1]["token"] == "Lon"
    assert all(c["logprobs"] is None or c["logprobs"]["refusal"] is None for c in choices)


async def test_an_answer_streamed_whole_carries_its_logprobs_and_a_stream_not_asking_none() -> None:
    task = _chat(logprobs=True, stream=True)
    events = [
        e
        async for e in completions.stream_events(task, [_done()], _items(), timeout_s=5, include_usage=False)
    ]
    (text,) = [c for body in _sse(events) for c in body["choices"] if c["delta"].get("content")]
    assert [t["token"] for t in text["logprobs"]["content"]] == ["Par", "is"]
    plain = _chat(stream=True)
    head: list[Chunk | TaskCompleted] = [Chunk(seq=0, delta="Paris")]
    events = [
        e
        async for e in completions.stream_events(
            plain, head, _items(_done(logprobs=None)), timeout_s=5, include_usage=False
        )
    ]
    assert all(c["logprobs"] is None for body in _sse(events) for c in body["choices"])


def test_the_legacy_face_asks_for_n_alternatives_and_zero_for_the_chosen_tokens_only() -> None:
    assert (_legacy(logprobs=3).chat().logprobs, _legacy(logprobs=3).chat().top_logprobs) == (True, 3)
    assert (_legacy(logprobs=0).chat().logprobs, _legacy(logprobs=0).chat().top_logprobs) == (True, 0)
    assert (_legacy(logprobs=None).chat().logprobs, _legacy().chat().top_logprobs) == (False, None)


def test_a_text_completion_gives_tokens_logprobs_alternatives_and_offsets() -> None:
    task = _legacy(logprobs=2, n=2)
    done = _done(
        content="Paris —",
        logprobs=[PAR, IS, DASH_START, DASH_END],
        other_choices=[Choice(content="Oslo", finish_reason="length", logprobs=OSLO)],
    )
    first, second = orjson.loads(legacy.completion_json(task, done))["choices"]
    assert first["logprobs"] == {
        "tokens": ["Par", "is", " \\xe2\\x80", "\\x94"],
        "token_logprobs": [-0.25, -0.01, -2.0, -0.5],
        # each token's alternatives, the chosen one among them
        "top_logprobs": [{"Par": -0.25, "Lon": -1.5}, {"is": -0.01}, {" \\xe2\\x80": -2.0}, {"\\x94": -0.5}],
        # characters into the answer's text: the dash begins at 6 and its second token with it
        "text_offset": [0, 3, 5, 6],
    }
    assert second["logprobs"]["tokens"] == ["Oslo"] and second["logprobs"]["text_offset"] == [0]
    plain = orjson.loads(legacy.completion_json(_legacy(), _done(logprobs=None)))
    assert plain["choices"][0]["logprobs"] is None


async def test_a_streamed_text_completion_counts_offsets_across_its_chunks() -> None:
    task = _legacy(logprobs=1, stream=True)
    head: list[Chunk | TaskCompleted] = [Chunk(seq=0, delta="Par", logprobs=[PAR], model="openai/gpt-6-luna")]
    rest = _items(
        Chunk(seq=1, delta="is", logprobs=[IS]),
        Chunk(seq=2, done=True, finish_reason="stop"),
        _done(other_choices=[Choice(content="Oslo", finish_reason="stop", logprobs=OSLO)]),
    )
    events = [e async for e in legacy.stream_events(task, head, rest, timeout_s=5, include_usage=False)]
    choices = [c for body in _sse(events) for c in body["choices"]]
    assert [(c["index"], c["text"], c["logprobs"] and c["logprobs"]["text_offset"]) for c in choices] == [
        (0, "Par", [0]),
        (0, "is", [3]),
        (0, "", None),
        (1, "Oslo", [0]),
        (1, "", None),
    ]
    whole = [
        e async for e in legacy.stream_events(task, [_done()], _items(), timeout_s=5, include_usage=False)
    ]
    assert _sse(whole)[0]["choices"][0]["logprobs"]["tokens"] == ["Par", "is"]


GUARD = Guardrails(GuardrailPolicy(GuardrailConfig(pii="redact", pii_output=True)), events=None)
LEAK = [TokenLogprob(token="bob@example.org", logprob=-0.1)]


async def test_an_answer_the_output_guardrails_change_loses_its_logprobs() -> None:
    others = [
        Choice(content="Mail bob@example.org", finish_reason="stop", logprobs=LEAK),
        Choice(content="Oslo", finish_reason="stop", logprobs=OSLO),
    ]
    kept = await GUARD.screen_output(
        _done(other_choices=others), principal=PRINCIPAL, request_id="r1", endpoint="/v1/chat/completions"
    )
    assert kept.logprobs == [PAR, IS]  # its text unchanged
    assert [c.logprobs for c in kept.other_choices] == [None, OSLO]
    leaky = _done(content="Mail bob@example.org", logprobs=LEAK)
    out = await GUARD.screen_output(
        leaky, principal=PRINCIPAL, request_id="r2", endpoint="/v1/chat/completions"
    )
    assert out.content == "Mail [REDACTED_EMAIL]" and out.logprobs is None
    body = orjson.loads(completions.completion_json(_chat(logprobs=True), out))
    assert body["choices"][0]["logprobs"] is None and b"bob" not in completions.completion_json(_chat(), out)


async def test_a_task_result_keeps_its_logprobs_unless_the_guardrails_change_its_text() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    queued = TaskState(
        id="t1", tenant_id="acme", status="queued", model="auto", created_at=now, updated_at=now
    )
    others = [Choice(content="Mail bob@example.org", finish_reason="stop", logprobs=LEAK)]
    state = with_outcome(queued, _done(other_choices=others, logprobs_truncated=True))
    assert state.result is not None and state.result.logprobs == [PAR, IS] and state.result.logprobs_truncated
    dumped = state.model_dump(mode="json")["result"]
    assert dumped["logprobs"][0]["top_logprobs"][1] == {"token": "Lon", "logprob": -1.5, "bytes": None}
    screened = await GUARD.screen_task(state, principal=PRINCIPAL, request_id="r3", endpoint="/v1/tasks/t1")
    assert screened.result is not None and screened.result.logprobs == [PAR, IS]
    assert screened.result.other_choices[0].logprobs is None
    leaky = with_outcome(queued, _done(content="Mail bob@example.org", logprobs=LEAK))
    screened = await GUARD.screen_task(leaky, principal=PRINCIPAL, request_id="r4", endpoint="/v1/tasks/t1")
    assert screened.result is not None and screened.result.logprobs is None


async def test_a_request_for_logprobs_never_reaches_the_cache() -> None:
    """Bypassed before any store is read (as several answers are): the store here cannot be read at all."""
    unreadable = ExactStore(None)  # type: ignore[arg-type]
    config = CacheConfig(enabled=True, semantic=False, ttl_s=60, threshold=0.9)
    cache = ResponseCache(store=unreadable, configs=Configs(config))
    request = ChatRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": "x"}]})
    task = TaskSubmitted(task_id="t1", tenant_id="acme", request=request, submitted_at=datetime.now(UTC))
    asked = task.model_copy(update={"request": request.model_copy(update={"logprobs": True})})
    assert await cache.lookup(tenant_id="acme", plan=None, task=asked, directive=Directive()) is None
    # the same request without them is looked up (a miss here: the store cannot be read)
    found = await cache.lookup(tenant_id="acme", plan=None, task=task, directive=Directive())
    assert found is not None and found.hit is None


async def test_tokens_that_come_without_text_are_streamed_on_both_faces() -> None:
    """A chunk with tokens and no text (the end of a character cut between tokens, a last token after the
    text) is still a chunk to the client, on the chat and the legacy face, with its tokens."""
    items: list[Chunk | TaskCompleted] = [
        Chunk(seq=0, delta="Par", logprobs=[PAR], model="openai/gpt-6-luna"),
        Chunk(seq=1, delta="", logprobs=[DASH_START]),
        Chunk(seq=2, done=True, finish_reason="length"),
        _done(content="Par", logprobs=[PAR, DASH_START]),
    ]
    chat = _chat(logprobs=True, stream=True)
    events = [
        e
        async for e in completions.stream_events(
            chat, items[:1], _items(*items[1:]), timeout_s=5, include_usage=False
        )
    ]
    choices = [c for body in _sse(events) for c in body["choices"] if c["logprobs"] is not None]
    assert [(c["delta"].get("content"), [t["token"] for t in c["logprobs"]["content"]]) for c in choices] == [
        ("Par", ["Par"]),
        ("", [" \\xe2\\x80"]),
    ]
    # a stream whose first chunk is tokens without text starts with them
    first = [Chunk(seq=0, delta="", logprobs=[DASH_START], model="openai/gpt-6-luna")]
    rest = _items(Chunk(seq=1, done=True, finish_reason="length"), _done(content="", logprobs=[DASH_START]))
    events = [e async for e in completions.stream_events(chat, first, rest, timeout_s=5, include_usage=False)]
    tokens = [c["logprobs"] for body in _sse(events) for c in body.get("choices", []) if c["logprobs"]]
    assert [t["content"][0]["token"] for t in tokens] == [" \\xe2\\x80"]
    text = _legacy(logprobs=0, stream=True)
    events = [
        e
        async for e in legacy.stream_events(
            text, items[:1], _items(*items[1:]), timeout_s=5, include_usage=False
        )
    ]
    shown = [c for body in _sse(events) for c in body["choices"] if c["logprobs"] is not None]
    assert [(c["text"], c["logprobs"]["tokens"], c["logprobs"]["text_offset"]) for c in shown] == [
        ("Par", ["Par"], [0]),
        ("", [" \\xe2\\x80"], [3]),
    ]
