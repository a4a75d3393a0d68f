"""A stream answered whole for its output guardrails that started before its answer came (keep-alives):
when screening the answer fails (a bug), the response has begun, so the failure can no longer be its 500;
it is the stream's error event, and the unscreened answer is never sent (`whole_streams`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from switchyard.common.events import ChatRequest, TaskCompleted, TaskFailed, TaskSubmitted
from switchyard.gateway import whole_streams
from switchyard.gateway.faces import OPENAI
from tests.unit.gateway.streams import calls_answer, sse_data

pytestmark = pytest.mark.unit

SECRET = "the customer's card is 4111 1111 1111 1111"


class Guardrails:
    def __init__(self, *, fails: bool) -> None:
        self.fails = fails

    async def screen_output(self, done: TaskCompleted, **_: Any) -> TaskCompleted:
        if self.fails:
            raise RuntimeError("a bug in a screen")
        return done.model_copy(update={"content": "[REDACTED]"})


def _asked() -> whole_streams.Asked:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [],
        "query_string": b"",
    }
    return whole_streams.Asked(
        Request(scope),
        principal=None,
        face=OPENAI,
        cached=None,
        started=0.0,
        timeout_s=30,
        include_usage=False,
    )  # type: ignore[arg-type]


async def _rendered(item: TaskCompleted | TaskFailed, task: TaskSubmitted) -> list[bytes]:
    async def rest() -> AsyncIterator[TaskCompleted | TaskFailed]:
        yield item

    return [e async for e in OPENAI.stream(task, [], rest(), timeout_s=30, include_usage=False)]


@pytest.mark.parametrize("fails", [False, True])
async def test_a_screen_that_fails_after_the_start_is_the_streams_error_event(fails: bool) -> None:
    request = ChatRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": "x"}]})
    task = TaskSubmitted(task_id="t1", tenant_id="acme", request=request, submitted_at=datetime.now(UTC))
    gw = SimpleNamespace(cache=None, guardrails=Guardrails(fails=fails))
    answer = calls_answer(content=SECRET)

    item = await whole_streams.screened_or_failed(gw, _asked(), task, answer)  # type: ignore[arg-type]
    events = await _rendered(item, task)
    sent = b"".join(events)
    assert SECRET.encode() not in sent
    if not fails:
        assert b"[REDACTED]" in sent and sent.rstrip().endswith(b"data: [DONE]")
        return
    assert isinstance(item, TaskFailed) and item.error_code == "internal_error"
    errors = [d["error"] for d in sse_data(events) if "error" in d]
    assert errors and errors[-1]["code"] == "internal_error" and b"[DONE]" not in sent
