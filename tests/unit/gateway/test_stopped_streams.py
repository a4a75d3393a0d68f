"""A stream under way when the gateway's stop ends it (`tasks.Stopped`) ends with its face's error event,
never with the face's end marker: a client can tell an answer cut by a restart from a finished one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from switchyard.common.events import TaskCompleted, TaskFailed
from switchyard.common.streaming import Chunk
from switchyard.gateway import completions, faces
from switchyard.gateway.tasks import Stopped
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")


async def _stopped_after(*items: Chunk) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
    for item in items:
        yield item
    raise Stopped


@pytest.mark.parametrize(
    ("face", "ends"),
    [
        (faces.OPENAI, b"[DONE]"),
        (faces.LEGACY, b"[DONE]"),
        (faces.ANTHROPIC, b"message_stop"),
        (faces.RESPONSES, b"response.completed"),
    ],
)
async def test_a_stream_ended_by_the_gateways_stop_says_so(face: faces.Face, ends: bytes) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "Name a city."}], "stream": True}
    parsed = completions.parse_request(orjson.dumps(body), max_prompt_chars=1_000)
    task = completions.build_task(parsed, PRINCIPAL, priority=None)
    head: list[Chunk | TaskCompleted] = [Chunk(seq=0, delta="Par", model="local/smollm2-135m-instruct")]
    events = [
        e
        async for e in face.stream(
            task, head, _stopped_after(Chunk(seq=1, delta="is")), timeout_s=5, include_usage=True
        )
    ]
    text = b"".join(events)
    assert b"Par" in text and b"is" in text
    last = events[-1]
    assert b"error" in last and Stopped.message.encode() in last
    assert ends not in text
