"""A streamed answer lives as long as it flows: bounded by the time to its first output, the silence
between outputs and a cap, not by one deadline for the whole task; and a task whose client says it waits
longer (its SDK's timeout, `x-switchyard-timeout`) runs that long. The gateway, router and executor run
as processes on a real nats-server, with small bounds (a first output or an answer within 3 s, a call
within 2 s, silences of 1 s, clients' waits up to 20 s); a local OpenAI stand-in drips its words
(`drip-<seconds>`) or thinks before its first word (`think-<seconds>`); a fixture plays the classifier."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.integration.executor.slow_stack import Stack, slow_stack
from tests.integration.executor.tools_stack import classifier

__all__ = ["classifier"]  # the fixture, used by name


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    executor = {
        "SWITCHYARD_TASK_DEADLINE_S": "3",
        "SWITCHYARD_CALL_TIMEOUT_S": "2",
        "SWITCHYARD_STREAM_IDLE_S": "1",
        "SWITCHYARD_STREAM_MAX_S": "30",
    }
    gateway = {
        "SWITCHYARD_TASK_TIMEOUT_S": "4",
        "SWITCHYARD_STREAM_IDLE_TIMEOUT_S": "2",
        "SWITCHYARD_STREAM_MAX_TIMEOUT_S": "40",
        "SWITCHYARD_REQUEST_TIMEOUT_MAX_S": "20",
    }
    tmp = tmp_path_factory.mktemp("long-streams")
    models = ["drip-0.5", "drip-5", "think-5", "pause-3"]
    with slow_stack(tmp, models, executor=executor, gateway=gateway) as running:
        yield running


async def _stream(stack: Stack, model: str, *, waits_s: float | None = None) -> list[dict[str, Any]]:
    """The stream's events, as JSON (`[DONE]` as {"done": True}); `waits_s`: its client says it waits that
    long (`x-switchyard-timeout`)."""
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": "Please tell me a long story about the sea"}],
    }
    headers = {"Authorization": f"Bearer {stack.org.keys['member']}"}
    if waits_s is not None:
        headers["x-switchyard-timeout"] = f"{waits_s:g}"
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=stack.base, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append({"done": True} if data == "[DONE]" else json.loads(data))
    return events


@pytest.mark.usefixtures("classifier")
async def test_a_stream_that_keeps_flowing_outlives_the_task_deadline(stack: Stack) -> None:
    """Twelve words ("Hello! You said: " and the prompt's nine) half a second apart: past the first-output
    deadline (3 s) and the gateway's wait for it (4 s), never silent for the idle limit (1 s)."""
    started = time.monotonic()
    events = await _stream(stack, "plain/drip-0.5")
    assert time.monotonic() - started > 5.0
    assert not [e for e in events if "error" in e], events
    text = "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices", []))
    assert len(text.split()) == 12
    assert [c["finish_reason"] for e in events for c in e.get("choices", []) if c["finish_reason"]] == [
        "stop"
    ]
    assert events[-1] == {"done": True}
    assert stack.fake.scenarios.finished["drip-0.5"] == 1


@pytest.mark.usefixtures("classifier")
async def test_a_stream_that_stalls_is_cut_at_the_idle_limit(stack: Stack) -> None:
    """Its first word, then 5 s of silence: cut about a second after that word, with an error event."""
    started = time.monotonic()
    events = await _stream(stack, "plain/drip-5")
    assert time.monotonic() - started < 3.5
    errors = [e["error"] for e in events if "error" in e]
    assert [(e["code"], e["message"]) for e in errors] == [
        ("provider_timeout", "the stream sent nothing for 1 s (its idle limit)")
    ], events
    assert stack.fake.scenarios.finished["drip-5"] == 0  # the upstream's stream was cut


@pytest.mark.usefixtures("classifier")
async def test_a_pause_after_output_is_waited_for_as_long_as_its_client_waits_for_a_read(
    stack: Stack,
) -> None:
    """Its first word, then 3 s of silence (a reasoning model between a text part and a tool call), then
    the rest: past the idle limits (the executor's 1 s, the gateway's 2 s), within the 12 s its client
    waits for each read (an SDK's read timeout), so it is not cut. Without the header it is (above)."""
    events = await _stream(stack, "plain/pause-3", waits_s=12)
    assert not [e for e in events if "error" in e], events
    text = "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices", []))
    assert len(text.split()) == 12 and events[-1] == {"done": True}
    assert stack.fake.scenarios.finished["pause-3"] == 1
    cut = await _stream(stack, "plain/pause-3", waits_s=2.5)  # a client that waits less: cut as before
    assert [e["error"]["code"] for e in cut if "error" in e] == ["provider_timeout"], cut


QUESTION = [{"role": "user", "content": "What is the answer to everything?"}]


@pytest.mark.usefixtures("classifier")
async def test_an_answer_slower_than_the_deadline_fails_when_its_client_says_nothing(stack: Stack) -> None:
    """No timeout header (a plain HTTP client): the executor's bounds (2 s a call, 3 s a task) cut a
    model that answers after 5 s, and the client reads why."""
    headers = {"Authorization": f"Bearer {stack.org.keys['member']}"}
    body = {"model": "plain/think-5", "messages": QUESTION}
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as http:
        response = await http.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "provider_timeout"


@pytest.mark.usefixtures("classifier")
async def test_the_openai_sdks_own_timeout_lets_a_slow_answer_finish(stack: Stack) -> None:
    """The OpenAI SDK sends its read timeout on every request (`x-stainless-read-timeout`): at 15 s, the
    task may run 13.5 s and its one call all of it, so the 5 s answer comes back whole."""
    client = openai.AsyncOpenAI(
        base_url=f"{stack.base}/v1", api_key=stack.org.keys["member"], timeout=15, max_retries=0
    )
    started = time.monotonic()
    completion = await client.chat.completions.create(model="plain/think-5", messages=QUESTION)  # type: ignore[arg-type]
    assert time.monotonic() - started > 5.0
    assert completion.choices[0].message.content == "Hello! You said: What is the answer to everything?"
    assert completion.choices[0].finish_reason == "stop"
    await client.close()


@pytest.mark.usefixtures("classifier")
async def test_a_stream_whose_client_says_it_waits_gets_its_first_output_late(stack: Stack) -> None:
    """`x-switchyard-timeout: 12` on a stream whose first word comes after 5 s: past the task deadline
    (3 s) and the gateway's default wait for a first output (4 s), within what the client said."""
    headers = {"Authorization": f"Bearer {stack.org.keys['member']}", "x-switchyard-timeout": "12"}
    body = {"model": "plain/think-5", "stream": True, "messages": QUESTION}
    async with (
        httpx.AsyncClient(base_url=stack.base, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert not [e for e in events if "error" in e], events
    text = "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices", []))
    assert text == "Hello! You said: What is the answer to everything?"
