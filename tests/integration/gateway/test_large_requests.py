"""Requests as large as coding agents send (long sessions with screenshots), on a real gateway process and
a real nats-server (max_payload 8 MiB, as shipped): one the bus carries is answered; one it cannot is a
413 `bus_max_payload_exceeded` in its face's error shape, before anything is admitted or published (it was
a 503 `bus_unavailable` the client would retry, or, between the envelope's old 4 MiB cap and max_payload,
a task dead-lettered by its first consumer and a 504 after the timeout)."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import httpx
import pytest

from switchyard.cli.processes import MAX_PAYLOAD, NatsServer
from switchyard.common import subjects
from switchyard.common.events import TaskSubmitted
from tests.integration.gateway.harness import Answerer, auth, gateways, make_org, stored_events

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def _image(size: int) -> str:
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


def _chat(image: str) -> dict[str, object]:
    url = f"data:image/png;base64,{image}"
    content = [
        {"type": "text", "text": "what is on this screen?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": content}]}


def _messages(image: str) -> dict[str, object]:
    source = {"type": "base64", "media_type": "image/png", "data": image}
    content = [{"type": "image", "source": source}, {"type": "text", "text": "what is on this screen?"}]
    return {
        "model": "auto",
        "max_tokens": 16,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }


def _responses(image: str) -> dict[str, object]:
    content = [
        {"type": "input_text", "text": "what is on this screen?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{image}"},
    ]
    return {"model": "auto", "max_output_tokens": 16, "input": [{"role": "user", "content": content}]}


def test_a_request_larger_than_the_bus_carries_is_a_413_and_nothing_runs(
    nats_server: NatsServer, sqlite_url: str, tmp_path: Path
) -> None:
    env = {
        "SWITCHYARD_MAX_BODY_BYTES": str(16 * MB),  # above the bus: the bus's limit is what refuses
        "SWITCHYARD_MAX_PROMPT_CHARS": str(16 * MB),
        "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": "1",  # a slot not given back would refuse the next request
        # refused before admission, the 413s take no request of the minute: the request that fits is the
        # only one counted
        "SWITCHYARD_LIMIT_USER_REQUESTS_PER_MIN": "1",
    }
    over = _image(MAX_PAYLOAD + MB)  # 9 MiB of screenshot
    with gateways(nats_server, sqlite_url, tmp_path, env=env) as bases:
        org = asyncio.run(make_org(sqlite_url, "agents"))

        async def scenario() -> None:
            answerer = await Answerer.start(nats_server.url)
            try:
                async with httpx.AsyncClient(
                    base_url=bases[0], headers=auth(org.keys["admin"]), timeout=30
                ) as c:
                    refused = {
                        "chat": await c.post("/v1/chat/completions", json=_chat(over)),
                        "messages": await c.post("/v1/messages", json=_messages(over)),
                        "responses": await c.post("/v1/responses", json=_responses(over)),
                    }
                    # 6 MiB: above the envelope's old 4 MiB cap, within the bus: answered
                    fits = await c.post("/v1/chat/completions", json=_chat(_image(6 * MB)))
                for face, r in refused.items():
                    assert r.status_code == 413, (face, r.text[:300])
                    error = r.json()["error"]
                    assert error["code"] == "bus_max_payload_exceeded", face
                    assert (
                        "max_payload" in error["message"] and "SWITCHYARD_MAX_BODY_BYTES" in error["message"]
                    )
                    assert r.headers["x-request-id"] == error["request_id"]
                assert refused["messages"].json()["type"] == "error"  # Anthropic's shape
                assert refused["messages"].json()["error"]["type"] == "request_too_large"
                assert refused["chat"].json()["error"]["type"] == "invalid_request_error"  # OpenAI's
                assert fits.status_code == 200, fits.text[:300]
                assert fits.json()["choices"][0]["message"]["content"] == "Paris"
                stored, _ = await stored_events(nats_server.url, subjects.TASK_SUBMITTED, TaskSubmitted)
                assert [t.task_id for t in stored] == [t.task_id for t in answerer.seen]
                assert len(stored) == 1, "only the request that fits became a task"
            finally:
                await answerer.close()

        asyncio.run(scenario())


def test_a_body_of_too_many_items_or_nested_too_deep_is_a_400_in_its_faces_shape(
    nats_server: NatsServer, sqlite_url: str, tmp_path: Path
) -> None:
    """Counted on the JSON as read (`bounds`), before the body is validated item by item on the event loop;
    a value nested deeper than the task can be written was a 500."""
    user = {"role": "user", "content": "a"}
    many = 100_001
    deep = b'{"a":' * 300 + b"{}" + b"}" * 300
    nested = (
        b'{"model":"claude-x","max_tokens":8,"tools":[{"name":"f","input_schema":{"type":"object"}}],"messages":['
        b'{"role":"user","content":"a"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f",'
        b'"input":' + deep + b'}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1",'
        b'"content":"a"}]}]}'
    )
    with gateways(nats_server, sqlite_url, tmp_path, env={"SWITCHYARD_MAX_BODY_BYTES": str(8 * MB)}) as bases:
        org = asyncio.run(make_org(sqlite_url, "items"))
        key = org.keys["admin"]

        async def scenario() -> dict[str, httpx.Response]:
            async with httpx.AsyncClient(base_url=bases[0], headers=auth(key), timeout=30) as c:
                return {
                    "chat": await c.post(
                        "/v1/chat/completions", json={"model": "auto", "messages": [user] * many}
                    ),
                    "responses": await c.post(
                        "/v1/responses", json={"model": "auto", "input": [user] * many}
                    ),
                    "messages": await c.post(
                        "/v1/messages", json={"model": "auto", "max_tokens": 8, "messages": [user] * many}
                    ),
                    "gemini": await c.post(
                        "/v1beta/models/auto:generateContent",
                        json={"contents": [{"role": "user", "parts": [{"text": "a"}]}] * (many // 2 + 1)},
                        headers={"x-goog-api-key": key},
                    ),
                    "nested": await c.post(
                        "/v1/messages", content=nested, headers={"content-type": "application/json"}
                    ),
                }

        answers = asyncio.run(scenario())
    for face, r in answers.items():
        assert r.status_code == 400, (face, r.text[:300])
    for face in ("chat", "responses"):
        error = answers[face].json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "array_above_max_length"), face
        assert error["param"] == {"chat": "messages", "responses": "input"}[face]
        assert "maximum length 100000" in error["message"] and error["request_id"]
    anthropic = answers["messages"].json()
    assert anthropic["type"] == "error" and anthropic["error"]["type"] == "invalid_request_error"
    assert "maximum length 100000" in anthropic["error"]["message"]
    google = answers["gemini"].json()["error"]
    assert (google["code"], google["status"]) == (400, "INVALID_ARGUMENT")
    assert "100000" in google["message"]
    deep_error = answers["nested"].json()
    assert deep_error["type"] == "error" and "nested too deeply" in deep_error["error"]["message"]
