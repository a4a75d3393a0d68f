"""A failure after a stream began is said with the type and code the same failure has when it is answered
before the stream (`outcomes.failure_error`): OpenAI's SDK raises a stream's `error` object as its
APIError's body (`.type`, `.code`, `.param`: openai-python `_streaming.py`), so a client that retries a
busy provider, or shortens a prompt too long, acts the same whether the failure came before or after the
first token. The Responses API's `response.failed` says the nearest of the codes its `ResponseError`
allows (`rate_limit_exceeded`, `invalid_prompt`, `server_error`: a closed Literal in openai-python), with
the failure's own `type` and `param` beside it (ResponseError's fields, openai 3.54.0)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from switchyard.common.events import TaskCompleted, TaskFailed
from switchyard.common.streaming import Chunk
from switchyard.gateway import completions, faces
from switchyard.gateway.tasks import TimedOut
from switchyard.gateway.tenants import Principal

from .streams import sse_data

pytestmark = pytest.mark.unit

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
BODY = {"model": "auto", "messages": [{"role": "user", "content": "Name a city."}], "stream": True}

# failure code -> (its non-stream type, code, param; what response.failed says)
FAILURES = {
    "provider_rate_limited": ("service_unavailable", "provider_rate_limited", None, "rate_limit_exceeded"),
    "provider_overloaded": ("service_unavailable", "provider_overloaded", None, "server_error"),
    "budget_exceeded": ("insufficient_quota", "budget_exceeded", None, "rate_limit_exceeded"),
    "provider_context_too_long": (
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
        "invalid_prompt",
    ),
    "provider_content_policy": ("invalid_request_error", "provider_content_policy", None, "invalid_prompt"),
    "provider_network": ("api_error", "provider_network", None, "server_error"),
    "task_expired": ("timeout", "task_expired", None, "server_error"),
}


def _failed(code: str) -> TaskFailed:
    return TaskFailed(
        task_id="t1", tenant_id="acme", error_code=code, error_message="it broke", failed_at=datetime.now(UTC)
    )


async def _after_output(end: TaskFailed | None) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    yield Chunk(seq=1, delta="is")
    if end is None:
        raise TimedOut("the task's answer did not come within 5 s")
    yield end


async def _stream(face: faces.Face, end: TaskFailed | None) -> list[dict[str, Any]]:
    task = completions.build_task(
        completions.parse_request(orjson.dumps(BODY), max_prompt_chars=1_000), PRINCIPAL, priority=None
    )
    head: list[Chunk | TaskCompleted] = [Chunk(seq=0, delta="Par", model="local/smollm2-135m-instruct")]
    out = face.stream(task, head, _after_output(end), timeout_s=5, include_usage=True)
    return sse_data([e async for e in out])


@pytest.mark.parametrize("face", [faces.OPENAI, faces.LEGACY], ids=["chat", "legacy"])
@pytest.mark.parametrize("failure", FAILURES)
async def test_a_completions_stream_error_has_the_failures_own_type_and_code(
    face: faces.Face, failure: str
) -> None:
    type_, code, param, _ = FAILURES[failure]
    error = (await _stream(face, _failed(failure)))[-1]["error"]
    assert (error["type"], error["code"], error["param"]) == (type_, code, param)
    assert error["message"] == "it broke"


@pytest.mark.parametrize("failure", FAILURES)
async def test_response_failed_says_the_nearest_response_error_code(failure: str) -> None:
    type_, code, param, said = FAILURES[failure]
    events = await _stream(faces.RESPONSES, _failed(failure))
    error, failed = events[-2:]
    assert (error["type"], error["code"], error["param"]) == ("error", code, param)
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"] == {"code": said, "message": "it broke", "type": type_, "param": param}


async def test_a_timed_out_stream_says_timeout_on_every_openai_face() -> None:
    for face in (faces.OPENAI, faces.LEGACY):
        error = (await _stream(face, None))[-1]["error"]
        assert (error["type"], error["code"]) == ("timeout", "task_timeout")
    failed = (await _stream(faces.RESPONSES, None))[-1]["response"]["error"]
    assert (failed["code"], failed["type"]) == ("server_error", "timeout")
