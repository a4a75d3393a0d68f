"""OpenAI's legacy completions face: a prompt to the pipeline's chat request (or a clear refusal of what only
a completion model could do), and an answer to a text completion, whole and streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from switchyard.common.events import TaskCompleted, TaskFailed, TaskSubmitted, Usage
from switchyard.common.streaming import Chunk, ChunkError
from switchyard.gateway import completions, legacy
from switchyard.gateway.errors import InvalidRequest, RequestTooLarge
from switchyard.gateway.tenants import Principal

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")


def _parse(**fields: Any) -> Any:
    body = {"model": "auto", "prompt": "Say this is a test", **fields}
    return legacy.parse_request(orjson.dumps(body), max_prompt_chars=1_000)


def _task(**fields: Any) -> TaskSubmitted:
    return completions.build_task(_parse(**fields), PRINCIPAL, priority=None)


def test_the_prompt_is_the_user_turn_and_max_tokens_defaults_to_openais_16() -> None:
    request = _task().request
    assert [(m.role, m.content) for m in request.messages] == [("user", "Say this is a test")]
    assert request.max_tokens == 16 and _task(max_tokens=None).request.max_tokens == 16
    request = _task(prompt=["Once upon a time"], max_tokens=64, temperature=0.5, stop="\n", seed=7).request
    assert request.messages[0].content == "Once upon a time"
    assert (request.max_tokens, request.temperature, request.stop, request.seed) == (64, 0.5, ["\n"], 7)
    streamed = _parse(stream=True, stream_options={"include_usage": True})
    assert streamed.stream and streamed.stream_options.include_usage
    # fields that change nothing returned are accepted, as OpenAI-compatible servers do
    assert _parse(echo=False, suffix=None, logprobs=None, best_of=1, n=1, user="u-9").user == "u-9"


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"suffix": "\n}"}, "suffix", "unsupported_parameter"),
        ({"echo": True}, "echo", "unsupported_parameter"),
        ({"logprobs": 6}, "logprobs", "invalid_value"),
        ({"logprobs": -1}, "logprobs", "invalid_value"),
        ({"logprobs": True}, "logprobs", "invalid_type"),
        ({"logprobs": "2"}, "logprobs", "invalid_type"),
        ({"best_of": 3}, "best_of", "unsupported_parameter"),
        ({"logit_bias": {"50256": -100}}, "logit_bias", "unsupported_parameter"),
        ({"prompt": [1212, 318, 257]}, "prompt", "unsupported_parameter"),  # token ids
        ({"prompt": [[1212, 318], [257]]}, "prompt", "unsupported_parameter"),
        ({"prompt": ["first", "second"]}, "prompt", "unsupported_parameter"),  # a batch
        ({"prompt": []}, "prompt", "unsupported_parameter"),
        # one prompt that is not text: it said "one prompt per request (this one has 1)"
        ({"prompt": [None]}, "prompt.0", "invalid_type"),
        ({"prompt": [{"text": "hi"}]}, "prompt.0", "invalid_type"),
        ({"prompt": "  "}, "prompt", "invalid_value"),
        ({"n": 9}, "n", "invalid_value"),
        ({"max_tokens": "5"}, "max_tokens", "invalid_type"),
        ({"stream": "yes"}, "stream", "invalid_type"),
    ],
)
def test_what_only_a_completion_model_could_do_is_refused_by_name(
    fields: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        _parse(**fields)
    assert (err.value.status, err.value.param, err.value.code) == (400, param, code)


def test_a_prompt_over_the_limit_is_413() -> None:
    with pytest.raises(RequestTooLarge) as err:
        _parse(prompt="x" * 1_001)
    assert err.value.status == 413 and err.value.code == "prompt_too_large"


def _done(**kw: Any) -> TaskCompleted:
    fields: dict[str, Any] = dict(
        task_id="t1",
        tenant_id="acme",
        model="openai/gpt-6-luna",
        provider="openai",
        tier="fast",
        content="This is a test.",
        finish_reason="stop",
        usage=Usage(prompt_tokens=5, completion_tokens=7, cache_read_tokens=2),
        attempts=1,
        latency_ms=1.0,
        completed_at=datetime.now(UTC),
    )
    fields.update(kw)
    return TaskCompleted(**fields)


def test_an_answer_is_a_text_completion() -> None:
    task = _task()
    body = orjson.loads(legacy.completion_json(task, _done(finish_reason="length")))
    assert body["id"] == f"cmpl-{task.task_id}" and body["object"] == "text_completion"
    assert body["model"] == "openai/gpt-6-luna" and isinstance(body["created"], int)
    assert body["choices"] == [
        {"text": "This is a test.", "index": 0, "logprobs": None, "finish_reason": "length"}
    ]
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 2},
    }


async def _then(
    *items: Chunk | TaskCompleted | TaskFailed,
) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    for item in items:
        yield item


async def _events(
    task: TaskSubmitted, head: list[Chunk | TaskCompleted], *rest: Chunk | TaskCompleted | TaskFailed
) -> list[Any]:
    raw = [e async for e in legacy.stream_events(task, head, _then(*rest), timeout_s=5, include_usage=True)]
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in raw)
    return [e[6:-2] if e == b"data: [DONE]\n\n" else orjson.loads(e[6:-2]) for e in raw]


async def test_a_streamed_answer_is_text_chunks_a_finish_the_usage_and_done() -> None:
    task = _task(stream=True)
    events = await _events(
        task,
        [Chunk(seq=0, thinking="Hmm.", model="openai/gpt-6-luna"), Chunk(seq=1, delta="This is")],
        Chunk(seq=2, delta=" a test."),
        Chunk(seq=3, done=True, finish_reason="stop"),
        _done(),
    )
    *chunks, usage, done = events
    assert done == b"[DONE]"
    assert [c["choices"][0]["text"] for c in chunks] == ["This is", " a test.", ""]  # no thinking in it
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert all(c["object"] == "text_completion" and c["id"] == f"cmpl-{task.task_id}" for c in chunks)
    assert chunks[0]["model"] == "openai/gpt-6-luna"
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 12


async def test_an_answer_sent_whole_is_streamed_as_one_text_chunk() -> None:
    events = await _events(_task(stream=True), [_done(content="Whole.")])
    assert [e["choices"][0]["text"] for e in events[:2]] == ["Whole.", ""]
    assert events[1]["choices"][0]["finish_reason"] == "stop" and events[-1] == b"[DONE]"


async def test_a_stream_that_breaks_or_skips_ends_with_an_error_event_and_no_done() -> None:
    task = _task(stream=True)
    broken = await _events(
        task,
        [Chunk(seq=0, delta="This")],
        Chunk(seq=1, error=ChunkError(code="provider_network", message="the upstream went away")),
    )
    assert broken[0]["choices"][0]["text"] == "This"
    assert broken[-1]["error"]["code"] == "provider_network" and b"[DONE]" not in broken
    gap = await _events(task, [Chunk(seq=0, delta="a"), Chunk(seq=2, delta="b")])
    assert gap[-1]["error"]["code"] == "stream_gap" and len(gap) == 2
    assert gap[-1]["error"]["message"].endswith("what was sent is incomplete: send the request again")
    failed = TaskFailed(
        task_id="t1",
        tenant_id="acme",
        error_code="provider_timeout",
        error_message="slow",
        failed_at=datetime.now(UTC),
    )
    assert (await _events(task, [Chunk(seq=0, delta="a")], failed))[-1]["error"]["code"] == "provider_timeout"
