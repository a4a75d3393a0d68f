"""How a stream's response starts when its model is silent longer than SWITCHYARD_STREAM_KEEPALIVE_S (0.5 s
here; a reasoning model thinking for minutes, scaled down): the gateway, router and executor as processes
on a real nats-server, a local OpenAI stand-in whose `think-3` sends its first word after 3 s.

- Its headers say what is known then, as a stream started at its first output does: the model the
  executor is calling (`x-switchyard-model`), and that the response started before any output.
- A stream answered whole because its organisation's output guardrails screen the whole answer gets the
  same keep-alives on every face while it waits (a proxy's idle timeout would cut it), and a failure
  before its start keeps its HTTP status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.integration.executor.slow_stack import Stack, slow_stack
from tests.integration.executor.tools_stack import classifier
from tests.integration.gateway.harness import Org, make_org

__all__ = ["classifier"]  # the fixture, used by name
pytestmark = pytest.mark.integration

THINKING = "plain/think-3"
QUESTION = [{"role": "user", "content": "What is the answer to everything?"}]
ANSWER = "Hello! You said: What is the answer to everything?"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Org]]:
    tmp = tmp_path_factory.mktemp("stream-starts")
    guardrails = tmp / "guardrails.yaml"  # the `pro` plan's answers are screened whole
    guardrails.write_text(yaml.safe_dump({"plans": {"pro": {"pii_output": True}}}))
    gateway = {
        "SWITCHYARD_STREAM_KEEPALIVE_S": "0.5",
        "SWITCHYARD_GUARDRAILS_PATH": str(guardrails),
        "SWITCHYARD_TASK_TIMEOUT_S": "10",
        "SWITCHYARD_REQUEST_TIMEOUT_MAX_S": "30",
    }
    executor = {"SWITCHYARD_TASK_DEADLINE_S": "10", "SWITCHYARD_CALL_TIMEOUT_S": "8"}
    with slow_stack(
        tmp, ["think-3", "drip-0.2", "error-400", "slow-12"], executor=executor, gateway=gateway
    ) as running:
        db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
        guarded = asyncio.run(make_org(db_url, "guarded", roles=("member",), plan="pro"))
        yield running, guarded


@pytest.fixture(scope="module")
def stack(world: tuple[Stack, Org]) -> Stack:
    return world[0]


def _switchyard_headers(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith(("x-switchyard-", "x-ratelimit-"))}


async def _opened(http: httpx.AsyncClient, path: str, body: object, headers: dict[str, str]) -> tuple:
    """(status, headers, seconds to the headers, the body's text)."""
    started = time.monotonic()
    async with http.stream("POST", path, json=body, headers=headers) as r:
        opened = time.monotonic() - started
        text = (await r.aread()).decode()
    return r.status_code, r.headers, opened, text


@pytest.mark.usefixtures("classifier")
async def test_a_stream_started_before_its_first_output_names_the_model_being_called(
    world: tuple[Stack, Org],
) -> None:
    running, _ = world
    headers = {"Authorization": f"Bearer {running.org.keys['member']}"}
    async with httpx.AsyncClient(base_url=running.base, timeout=30) as http:
        early = await _opened(
            http, "/v1/chat/completions", {"model": THINKING, "stream": True, "messages": QUESTION}, headers
        )
        normal = await _opened(
            http,
            "/v1/chat/completions",
            {"model": "plain/drip-0.2", "stream": True, "messages": QUESTION},
            headers,
        )
    status, early_headers, opened, text = early
    assert status == 200 and opened < 2.0, (opened, text)  # 3 s before its first word
    assert ": keep-alive" in text and ANSWER.split()[0] in text, text
    assert early_headers["x-switchyard-model"] == THINKING
    assert early_headers["x-switchyard-stream-start"] == "keep-alive"
    status, normal_headers, _, text = normal
    assert status == 200, text
    assert normal_headers["x-switchyard-model"] == "plain/drip-0.2"
    assert normal_headers["x-switchyard-stream-start"] == "output"
    # the same headers, whichever way the stream started
    assert _switchyard_headers(early_headers).keys() == _switchyard_headers(normal_headers).keys()


FACES = [
    ("/v1/chat/completions", {"model": THINKING, "messages": QUESTION, "stream": True}, ": keep-alive"),
    ("/v1/responses", {"model": THINKING, "input": QUESTION[0]["content"], "stream": True}, ": keep-alive"),
    (
        "/v1/messages",
        {"model": THINKING, "max_tokens": 64, "messages": QUESTION, "stream": True},
        'event: ping\ndata: {"type":"ping"}',
    ),
    (
        f"/v1beta/models/{THINKING}:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": QUESTION[0]["content"]}]}]},
        "",  # a blank line
    ),
]


def _auth(path: str, key: str) -> dict[str, str]:
    if path.startswith("/v1/messages"):
        return {"x-api-key": key}
    if path.startswith("/v1beta"):
        return {"x-goog-api-key": key}
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.usefixtures("classifier")
@pytest.mark.parametrize(("path", "body", "beat"), FACES, ids=["chat", "responses", "messages", "gemini"])
async def test_a_stream_answered_whole_for_its_output_guardrails_gets_keep_alives_while_it_waits(
    world: tuple[Stack, Org], path: str, body: dict[str, object], beat: str
) -> None:
    running, guarded = world
    async with httpx.AsyncClient(base_url=running.base, timeout=30) as http:
        status, headers, opened, text = await _opened(http, path, body, _auth(path, guarded.keys["member"]))
    assert status == 200 and opened < 2.0, (opened, text)  # 3 s before the answer
    assert headers["x-switchyard-stream-start"] == "keep-alive"
    assert headers["x-switchyard-model"] == THINKING
    if beat:
        events = text.split("\n\n")
        beats = [n for n, e in enumerate(events) if e == beat]
        answered = next(n for n, e in enumerate(events) if "Hello" in e)
        assert len(beats) >= 3 and min(beats) < answered, text  # ~5 in the 2.5 s of silence after the headers
    else:  # the Gemini face's blank lines, before its first event (the answer)
        assert len(text) - len(text.lstrip("\n")) >= 3, text
    assert '"error":{' not in text and "event: error" not in text, text
    assert "".join(text.split("Hello! You said: ")[1:]).startswith("What is the answer"), text


@pytest.mark.usefixtures("classifier")
async def test_a_whole_streams_failure_before_its_start_keeps_its_http_status(
    world: tuple[Stack, Org],
) -> None:
    running, guarded = world
    body = {"model": "plain/error-400", "messages": QUESTION, "stream": True}
    async with httpx.AsyncClient(base_url=running.base, timeout=30) as http:
        status, _, opened, text = await _opened(
            http, "/v1/chat/completions", body, _auth("/v1/chat", guarded.keys["member"])
        )
    assert status == 400 and opened < 2.0, (status, opened, text)


@pytest.mark.usefixtures("classifier")
async def test_a_whole_streams_failure_after_its_start_is_its_error_event(world: tuple[Stack, Org]) -> None:
    """The provider does not answer within the executor's call timeout (8 s): the task fails after the
    response started, which the stream ends with its error event, never an answer or [DONE]."""
    running, guarded = world
    body = {"model": "plain/slow-12", "messages": QUESTION, "stream": True}
    async with httpx.AsyncClient(base_url=running.base, timeout=30) as http:
        status, _, opened, text = await _opened(
            http, "/v1/chat/completions", body, _auth("/v1/chat", guarded.keys["member"])
        )
    assert status == 200 and opened < 2.0, (status, opened, text)
    events = [e for e in text.split("\n\n") if e]
    assert events.count(": keep-alive") >= 10 and '"error":{' in events[-1], text
    assert "[DONE]" not in text, text
