"""Requests the providers refuse with a 400, refused by the gateway's OpenAI and Anthropic faces in the
providers' words before any task is made (they were passed on, and answered or refused as the router
happened to pick a model), and a model's retrieval agreeing with what a face's requests take. One gateway
process on a real nats-server and SQLite; the test answers the tasks (`Answerer`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common.policy import load_policy
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from tests.integration.gateway.harness import Answerer, Org, auth, gateways, make_org

pytestmark = pytest.mark.integration

ALIASES = {"sonnet": "anthropic/claude-sonnet-5-5", "fast": "local/smollm2-135m-instruct"}
ANTHROPIC = {"anthropic-version": "2023-06-01"}
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "capital of France?"}]}
MESSAGE = {"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "capital of France?"}]}
RESPONSE = {"model": "auto", "input": "capital of France?"}


Stack = tuple[str, str, Org]  # the bus's URL, the gateway's, the organisation


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("face-parity")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    policy = tmp / "policy.yaml"  # JSON is YAML
    policy.write_bytes(orjson.dumps({**load_policy().model_dump(mode="json"), "aliases": ALIASES}))

    async def anthropic_announced() -> None:
        nc = await nats.connect(server.url)
        await announce(await providers_bucket(nc.jetstream()), ProviderStatus(provider="anthropic"))
        await nc.close()

    try:
        with gateways(server, db_url, tmp, env={"SWITCHYARD_POLICY_PATH": str(policy)}) as (base,):
            asyncio.run(anthropic_announced())
            yield server.url, base, asyncio.run(make_org(db_url, "acme", roles=("member",)))
    finally:
        server.stop()


@pytest.fixture
async def answerer(stack: Stack) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0])
    yield me
    await me.close()


async def _post(stack: Stack, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    _, base, org = stack
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        return await c.post(path, json=body, headers={**auth(org.keys["member"]), **(headers or {})})


def _openai_error(r: httpx.Response, param: str | None) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert error["request_id"] == r.headers["x-request-id"] and error["message"], error
    return error


def _anthropic_error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    assert body["request_id"] == r.headers["request-id"], body
    return body["error"]  # type: ignore[no-any-return]


async def test_stream_options_without_stream_is_refused_as_openai_refuses_it(
    stack: Stack, answerer: Answerer
) -> None:
    """OpenAI: 400 "The 'stream_options' parameter is only allowed when 'stream' is enabled." (param
    stream_options), on chat and legacy completions alike; it was taken and ignored. Not on the task API,
    which never streams."""
    legacy = {"model": "auto", "prompt": "capital of France?"}
    for path, body in (("/v1/chat/completions", CHAT), ("/v1/completions", legacy)):
        for stream in ({}, {"stream": False}):
            asked = {**body, **stream, "stream_options": {"include_usage": True}}
            error = _openai_error(await _post(stack, path, asked), "stream_options")
            assert "only allowed when 'stream' is enabled" in error["message"]
        streamed = await _post(
            stack, path, {**body, "stream": True, "stream_options": {"include_usage": True}}
        )
        assert streamed.status_code == 200, streamed.text
        unset = await _post(stack, path, {**body, "stream_options": None})  # null: not given
        assert unset.status_code == 200, unset.text
    # the task API never streams: it takes the option as asking nothing of it, as it did
    queued = await _post(stack, "/v1/tasks", {**CHAT, "stream_options": {"include_usage": True}})
    assert queued.status_code == 202, queued.text
    assert len(answerer.seen) == 5


async def test_max_output_tokens_below_16_is_refused_as_openai_refuses_it(
    stack: Stack, answerer: Answerer
) -> None:
    """The Responses API's `max_output_tokens` is at least 16: OpenAI answers 400
    integer_below_min_value "Invalid 'max_output_tokens': integer below minimum value. Expected a value
    >= 16, but got 15 instead."; it was passed on."""
    error = _openai_error(
        await _post(stack, "/v1/responses", {**RESPONSE, "max_output_tokens": 15}), "max_output_tokens"
    )
    assert error["code"] == "integer_below_min_value"
    assert error["message"] == (
        "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
        "but got 15 instead."
    )
    took = await _post(stack, "/v1/responses", {**RESPONSE, "max_output_tokens": 16})
    assert took.status_code == 200, took.text
    assert [t.request.max_tokens for t in answerer.seen] == [16]
    # The count has no `max_output_tokens` in OpenAI's reference (its guide: send create's payload), so no
    # minimum to hold it to: a create body that the create route refuses is still counted.
    counted = await _post(stack, "/v1/responses/input_tokens", {**RESPONSE, "max_output_tokens": 15})
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0, counted.text


@pytest.mark.parametrize("empty", ["", []], ids=["empty string", "empty list"])
async def test_an_empty_message_is_refused_as_anthropic_refuses_it(
    stack: Stack, answerer: Answerer, empty: str | list[Any]
) -> None:
    """Anthropic: "messages.N: all messages must have non-empty content except for the optional final
    assistant message" (400 invalid_request_error); it was passed on (an empty user turn to the model)."""
    turns = [
        [{"role": "user", "content": empty}],
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": empty},
            {"role": "user", "content": "?"},
        ],
    ]
    for n, messages in enumerate(turns):
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            error = _anthropic_error(await _post(stack, path, {**MESSAGE, "messages": messages}, ANTHROPIC))
            assert error["message"] == (
                f"messages.{n}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )
    prefilled = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": empty}]
    took = await _post(stack, "/v1/messages", {**MESSAGE, "messages": prefilled}, ANTHROPIC)
    assert took.status_code == 200, took.text
    assert len(answerer.seen) == 1


BAD_NAMES = ["get weather", "read.file", "x" * 65, "", "caf\u00e9"]


async def test_a_malformed_tool_is_refused_on_the_openai_faces(stack: Stack, answerer: Answerer) -> None:
    """OpenAI: a function's name matches ^[a-zA-Z0-9_-]+$ and is at most 64 characters ("Invalid
    'tools[0].function.name': string does not match pattern..." / "string too long..."), its
    `parameters` is a JSON Schema of type "object" ("Invalid schema for function 'f': schema must be a
    JSON Schema of 'type: "object"', got 'type: "string"'."). They were passed on."""
    for name in BAD_NAMES:
        tool = {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        _openai_error(
            await _post(stack, "/v1/chat/completions", {**CHAT, "tools": [tool]}), "tools.0.function.name"
        )
        flat = {"type": "function", "name": name, "parameters": {"type": "object"}}
        _openai_error(await _post(stack, "/v1/responses", {**RESPONSE, "tools": [flat]}), "tools.0.name")
    for schema, param in (({"type": "string"}, "parameters"), ("{}", "parameters"), ([], "parameters")):
        tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
        tools = [{"type": "function", "function": {"name": "g"}}, tool]
        _openai_error(
            await _post(stack, "/v1/chat/completions", {**CHAT, "tools": tools}), f"tools.1.function.{param}"
        )
        flat = {"type": "function", "name": "f", "parameters": schema}
        _openai_error(await _post(stack, "/v1/responses", {**RESPONSE, "tools": [flat]}), f"tools.0.{param}")
    fine = {"name": "get_weather-2", "parameters": {"type": "object", "properties": {}}}
    took = await _post(
        stack, "/v1/chat/completions", {**CHAT, "tools": [{"type": "function", "function": fine}]}
    )
    assert took.status_code == 200, took.text
    no_schema = {"type": "function", "function": {"name": "x" * 64}}  # `parameters` is optional
    took = await _post(stack, "/v1/chat/completions", {**CHAT, "tools": [no_schema]})
    assert took.status_code == 200, took.text
    assert len(answerer.seen) == 2


async def test_a_function_description_over_1024_characters_is_refused_on_chat_completions(
    stack: Stack, answerer: Answerer
) -> None:
    """OpenAI: "Invalid 'tools[1].function.description': string too long. Expected a string with maximum
    length 1024, but got a string with length 1025 instead." (code `string_above_max_length`). It was
    passed on, and a local model took it."""
    tools = [
        {"type": "function", "function": {"name": "g", "description": "d" * 1024}},
        {"type": "function", "function": {"name": "f", "description": "d" * 1025}},
    ]
    error = _openai_error(
        await _post(stack, "/v1/chat/completions", {**CHAT, "tools": tools}), "tools.1.function.description"
    )
    assert error["code"] == "string_above_max_length", error
    assert error["message"] == (
        "Invalid 'tools.1.function.description': string too long. Expected a string with maximum length "
        "1024, but got a string with length 1025 instead."
    ), error
    took = await _post(stack, "/v1/chat/completions", {**CHAT, "tools": tools[:1]})
    assert took.status_code == 200, took.text
    assert len(answerer.seen) == 1


async def test_a_malformed_tool_is_refused_on_the_anthropic_face(stack: Stack, answerer: Answerer) -> None:
    """Anthropic: "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'", and an
    `input_schema` whose type is not "object" ("tools.0.custom.input_schema.type: Input should be
    'object'"). They were passed on."""
    for name in ("get weather", "read.file", "x" * 129, ""):
        tool = {"name": name, "input_schema": {"type": "object"}}
        error = _anthropic_error(await _post(stack, "/v1/messages", {**MESSAGE, "tools": [tool]}, ANTHROPIC))
        assert error["param"] == "tools.0.name", error
    for schema in ({"type": "string"}, {"properties": {}}, "{}"):
        tool = {"name": "f", "input_schema": schema}
        error = _anthropic_error(await _post(stack, "/v1/messages", {**MESSAGE, "tools": [tool]}, ANTHROPIC))
        assert error["param"] in ("tools.0.input_schema", "tools.0.input_schema.type"), error
    fine = {"name": "x" * 128, "input_schema": {"type": "object"}}
    took = await _post(stack, "/v1/messages", {**MESSAGE, "tools": [fine]}, ANTHROPIC)
    assert took.status_code == 200, took.text
    assert len(answerer.seen) == 1


def _called(*ids: str) -> dict[str, Any]:
    calls = [{"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids]
    return {"role": "assistant", "content": None, "tool_calls": calls}


def _result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "42"}


async def test_tool_calls_left_unanswered_are_refused_as_openai_refuses_them(
    stack: Stack, answerer: Answerer
) -> None:
    """OpenAI: "An assistant message with 'tool_calls' must be followed by tool messages responding to
    each 'tool_call_id'. The following tool_call_ids did not have response messages: call_2". They were
    passed on; so were calls that are the conversation's last message, which OpenAI refuses too."""
    ask = {"role": "user", "content": "weather?"}
    tools = [{"type": "function", "function": {"name": "f"}}]
    unanswered = {  # and where OpenAI's `param` points: the message that came where a tool message was due
        "none answered": ([ask, _called("call_1"), {"role": "user", "content": "and?"}], 2),
        "one of two": (
            [ask, _called("call_1", "call_2"), _result("call_1"), {"role": "user", "content": "and?"}],
            3,
        ),
        "the last message": ([ask, _called("call_1", "call_2")], 1),
    }
    for name, (messages, at) in unanswered.items():
        r = await _post(stack, "/v1/chat/completions", {**CHAT, "messages": messages, "tools": tools})
        error = _openai_error(r, f"messages.[{at}].role")
        assert error["code"] is None, (name, error)  # as OpenAI's body: `'code': None`
        assert error["message"].startswith(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            "'tool_call_id'. The following tool_call_ids did not have response messages: "
        ), (name, error)
    assert "call_2" in error["message"]
    answered = [
        ask,
        _called("call_1", "call_2"),
        _result("call_2"),
        _result("call_1"),
        {"role": "user", "content": "ok"},
    ]
    took = await _post(stack, "/v1/chat/completions", {**CHAT, "messages": answered, "tools": tools})
    assert took.status_code == 200, took.text
    # The Anthropic face: a tool_use whose tool_result is not in the next user turn
    use = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}
    messages = [{"role": "user", "content": "weather?"}, use, {"role": "user", "content": "and?"}]
    anthropic_tools = [{"name": "f", "input_schema": {"type": "object"}}]
    body = {**MESSAGE, "messages": messages, "tools": anthropic_tools}
    assert "toolu_1" in _anthropic_error(await _post(stack, "/v1/messages", body, ANTHROPIC))["message"]
    assert len(answerer.seen) == 1


async def test_a_model_is_retrieved_when_the_face_asked_takes_it(stack: Stack, answerer: Answerer) -> None:
    """GET /v1/models/{id} answers a model exactly when a request of the face asking (the Anthropic SDK's
    `anthropic-version` header: Messages; else chat completions) takes its name: a bare Claude name on
    the Anthropic face (which runs it as anthropic/<name>; it was a 404 there while /v1/messages served
    it), aliases on both; a bare Claude name is no model of chat completions, on either endpoint."""
    names = ["auto", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5", "sonnet", "fast", "gpt-9"]
    faces = {
        "anthropic": (ANTHROPIC, "/v1/messages", MESSAGE),
        "openai": ({}, "/v1/chat/completions", CHAT),
    }
    _, base, org = stack
    seen: dict[str, dict[str, tuple[int, int]]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for face, (headers, path, body) in faces.items():
            for name in names:
                retrieved = await c.get(f"/v1/models/{name}", headers={**auth(org.keys["member"]), **headers})
                served = await c.post(
                    path, json={**body, "model": name}, headers={**auth(org.keys["member"]), **headers}
                )
                seen.setdefault(face, {})[name] = (retrieved.status_code, served.status_code)
                if retrieved.status_code == 200:
                    assert retrieved.json()["id"] == (
                        name if face == "openai" or name not in ALIASES else ALIASES[name]
                    )
    ok, missing = (200, 200), (404, 404)
    assert seen == {
        "anthropic": {
            "auto": ok,
            "claude-sonnet-4-5": ok,
            "anthropic/claude-sonnet-4-5": ok,
            "sonnet": ok,
            "fast": ok,
            "gpt-9": ok,  # a bare name on the Anthropic face is Anthropic's model (its provider announced)
        },
        "openai": {
            "auto": ok,
            "claude-sonnet-4-5": missing,
            "anthropic/claude-sonnet-4-5": ok,
            "sonnet": ok,
            "fast": ok,
            "gpt-9": missing,
        },
    }
