"""OpenAI's Responses API through the OpenAI adapter, over HTTP, against the fake's `/v1/responses`, which
refuses what OpenAI refuses (chat completions' fields and shapes, a function output without its call, a
part of the wrong kind for its role). The adapter believes it speaks to OpenAI itself; the calls carry
function tools to models that take them only there (GPT-6.1 Sol) or only there with reasoning (GPT-6)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import (
    ChatMessage,
    FunctionCall,
    FunctionSpec,
    Reasoning,
    ToolCall,
    ToolSpec,
)
from switchyard.executor.providers.base import ProviderCall, Reply, TextDelta
from switchyard.executor.providers.http import make_client
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from switchyard.executor.providers.openai.config import DEFAULT_BASE_URL
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
WEATHER = ToolSpec(
    function=FunctionSpec(
        name="get_weather",
        description="The weather in a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    )
)
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg=="
)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    server = FakeOpenAI()
    with BackgroundServer(server.app) as running:
        yield server, f"{running.url}/v1"


@pytest.fixture
async def openai(fake: tuple[FakeOpenAI, str]) -> AsyncIterator[OpenAIProvider]:
    server, url = fake
    settings = OpenAISettings(api_key=server.api_key, base_url=DEFAULT_BASE_URL)
    adapter = OpenAIProvider(settings, client=make_client(base_url=url, timeout_s=10))
    yield adapter
    await adapter.aclose()


def _call(model: str, messages: tuple[ChatMessage, ...] | None = None, **kw: Any) -> ProviderCall:
    ask = (ChatMessage(role="user", content="Weather in Paris?"),)
    return ProviderCall(model=model, messages=messages or ask, tools=(WEATHER,), **({"max_tokens": 200} | kw))


async def _answer(adapter: OpenAIProvider, call: ProviderCall, streamed: bool) -> tuple[Reply, str]:
    """The reply, and the text its deltas carried (the whole text for a request that is not streamed)."""
    if not streamed:
        reply = await adapter.request(call)
        return reply, reply.content
    parts = [p async for p in adapter.stream(call)]
    assert isinstance(parts[-1], Reply)
    return parts[-1], "".join(p.text for p in parts if isinstance(p, TextDelta))


async def test_the_fake_refuses_chat_completions_shapes(fake: tuple[FakeOpenAI, str]) -> None:
    """Bodies an adapter that reused chat completions' shapes would send: each refused, as OpenAI does, so
    the tests below would fail on such an adapter."""
    server, url = fake
    ok: dict[str, Any] = {"model": "gpt-6-luna", "input": "Hi", "store": False}
    nested_tool = {"type": "function", "function": {"name": "get_weather"}}
    refused = [  # (the parameter OpenAI names, the body)
        ("stop", {**ok, "stop": ["END"]}),
        ("max_tokens", {**ok, "max_tokens": 10}),
        ("tools[0].function", {**ok, "tools": [nested_tool]}),
        ("tool_choice.function", {**ok, "tool_choice": {"type": "function", "function": {"name": "x"}}}),
        (
            "input[0].content[0]",
            {
                **ok,
                "input": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            },
        ),
        (
            "input",
            {**ok, "input": [{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]},
        ),
        (
            "text.format.name",
            {**ok, "text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
        ),
        ("reasoning.effort", {**ok, "model": "gpt-6.1-sol", "reasoning": {"effort": "none"}}),
        (
            "tools[0].parameters",
            {
                **ok,
                "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            },
        ),
        (
            "input",
            {
                **ok,
                "input": [
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {"role": "user", "content": "Hi"},
                ],
            },
        ),
    ]
    async with httpx.AsyncClient(
        base_url=url, headers={"authorization": f"Bearer {server.api_key}"}
    ) as client:
        assert (await client.post("/responses", json=ok)).status_code == 200
        for param, body in refused:
            response = await client.post("/responses", json=body)
            assert response.status_code == 400, param
            assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_forced_tool_call_comes_back_as_the_pipelines_tool_call(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str], streamed: bool
) -> None:
    """GPT-6.1 Sol takes function tools only through the Responses API: flat function tools, the named
    tool choice in its shape, and the call read back from the output items (or the stream's events)."""
    call = _call("gpt-6.1-sol", tool_choice={"type": "function", "function": {"name": "get_weather"}})
    reply, text = await _answer(openai, call, streamed)
    sent = fake[0].requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert sent.body["tools"] == [
        {
            "type": "function",
            "strict": False,  # chat completions' default; the Responses API's is strict
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert reply.tool_calls == (
        ToolCall(id="call_fake_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}')),
    )
    assert (reply.finish_reason, reply.content, text) == ("tool_calls", "", "")
    # its reasoning: output tokens, counted apart too (`output_tokens_details.reasoning_tokens`)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.reasoning_tokens) == (
        21,
        64,
        64,
    )


async def test_the_text_streams_as_it_comes(openai: OpenAIProvider) -> None:
    parts = [p async for p in openai.stream(_call("gpt-6-luna", reasoning=Reasoning(effort="low")))]
    deltas = [p.text for p in parts if isinstance(p, TextDelta)]
    assert deltas == ["Hello! ", "You ", "said: ", "Weather ", "in ", "Paris?"]  # each event's delta
    assert isinstance(parts[-1], Reply) and parts[-1].content == "".join(deltas)


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_answer_with_tools_offered_is_text(openai: OpenAIProvider, streamed: bool) -> None:
    reply, text = await _answer(openai, _call("gpt-6.1-sol", tool_choice="auto"), streamed)
    assert reply.content == text == "Hello! You said: Weather in Paris?"
    assert (reply.finish_reason, reply.tool_calls) == ("stop", ())


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_tool_loop_goes_back_as_input_items(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str], streamed: bool
) -> None:
    """A whole conversation: system prompt, a user turn with an image, the assistant's tool call, the
    tool's result (with an image of its own) and the next user turn, as input items the fake checks
    (the output must follow its call; parts must fit their role)."""
    weather = ToolCall(id="call_7", function=FunctionCall(name="get_weather", arguments='{"city":"Paris"}'))
    messages = (
        ChatMessage(role="system", content="You are terse."),
        ChatMessage(
            role="user",
            content=[
                {"type": "text", "text": "Where is this?", "cache_control": {"type": "ephemeral"}},
                {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}},
            ],
        ),
        ChatMessage(role="assistant", content="Let me check.", tool_calls=[weather]),
        ChatMessage(
            role="tool",
            tool_call_id="call_7",
            content=[{"type": "text", "text": "sunny"}, {"type": "image_url", "image_url": {"url": PIXEL}}],
        ),
        ChatMessage(role="user", content="And tomorrow?"),
    )
    call = _call("gpt-6-sol", messages, reasoning=Reasoning(effort="medium"), parallel_tool_calls=False)
    reply, text = await _answer(openai, call, streamed)
    assert reply.content == text == "Hello! You said: And tomorrow?"
    sent = fake[0].requests[-1].body
    assert sent["input"] == [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Where is this?"},
                {"type": "input_image", "image_url": PIXEL, "detail": "low"},
            ],
        },
        {"role": "assistant", "content": "Let me check."},
        {
            "type": "function_call",
            "call_id": "call_7",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_7", "output": "sunny"},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "The result of call_7 came with these images:"},
                {"type": "input_image", "image_url": PIXEL, "detail": "auto"},
            ],
        },
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert (sent["parallel_tool_calls"], sent["stream"]) == (False, streamed)


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_answer_cut_at_max_output_tokens_finishes_with_length(
    openai: OpenAIProvider, streamed: bool
) -> None:
    reply, text = await _answer(openai, _call("gpt-6.1-sol", max_tokens=3), streamed)
    assert (reply.finish_reason, reply.content, text) == ("length", "Hello! You said:", "Hello! You said:")


async def test_structured_outputs_go_as_the_text_format(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str]
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}}
    await openai.request(_call("gpt-6.1-sol", response_format=fmt))
    sent = fake[0].requests[-1].body
    assert sent["text"] == {
        "format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}
    }
    # a strict function stays strict; its schema closes every object, as strict mode requires
    closed = {**schema, "required": ["city"]}
    strict = ToolSpec(function=FunctionSpec(name="get_weather", parameters=closed, strict=True))
    await openai.request(replace(_call("gpt-6.1-sol"), tools=(strict,)))
    assert fake[0].requests[-1].body["tools"][0]["strict"] is True


@pytest.mark.parametrize(("scenario", "kind"), [("stream-error", "overloaded"), ("break", "network")])
async def test_a_failed_or_broken_stream_is_a_provider_error(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str], scenario: str, kind: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        [p async for p in openai.stream(_call("gpt-6-luna", (ChatMessage(role="user", content=scenario),)))]
    assert caught.value.kind == kind and caught.value.retryable
    assert fake[0].requests[-1].path == "/v1/responses"


async def test_an_error_status_maps_as_in_chat_completions(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    wrong = OpenAISettings(api_key="sk-wrong", base_url=DEFAULT_BASE_URL)
    adapter = OpenAIProvider(wrong, client=make_client(base_url=url, timeout_s=10))
    try:
        with pytest.raises(ProviderError) as caught:
            await adapter.request(_call("gpt-6.1-sol"))
    finally:
        await adapter.aclose()
    assert caught.value.kind == "auth" and "Incorrect API key" in caught.value.message
    assert fake[0].requests[-1].path == "/v1/responses"


def test_a_reasoning_summary_and_a_refusal_are_read() -> None:
    from switchyard.executor.providers.openai.responses import parse_response

    body = {
        "status": "completed",
        "model": "gpt-6.1-sol-2026-05-01",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "The user asks for harm."}]},
            {"type": "message", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
        ],
        "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 30},
    }
    reply = parse_response(orjson.dumps(body), _call("gpt-6.1-sol"))
    assert (reply.content, reply.refusal, reply.finish_reason, reply.model) == (
        "",  # a refusal is not the answer's text: clients read it apart
        "I can't help with that.",
        "stop",
        "gpt-6.1-sol-2026-05-01",
    )
    assert [b.thinking for b in reply.thinking] == ["The user asks for harm."]
    assert (reply.usage.prompt_tokens, reply.usage.cache_read_tokens, reply.usage.completion_tokens) == (
        9,
        4,
        30,
    )
    assert reply.usage.reasoning_tokens is None  # no output_tokens_details: not counted apart


@pytest.mark.parametrize("streamed", [False, True])
async def test_the_reasoning_before_a_call_goes_back_before_it(
    openai: OpenAIProvider, fake: tuple[FakeOpenAI, str], streamed: bool
) -> None:
    """Stateless, the model's reasoning comes back encrypted beside its function call; carried under the
    call's id, it goes back before that call on the next turn, and the fake (which decrypts only what it
    issued, in the place it belongs) takes it."""
    from switchyard.executor.providers.openai.responses import REASONING

    forced = {"type": "function", "function": {"name": "get_weather"}}
    first, _ = await _answer(openai, _call("gpt-6.1-sol", tool_choice=forced), streamed)
    assert fake[0].requests[-1].body["include"] == ["reasoning.encrypted_content"]
    [call] = first.tool_calls
    [kept] = orjson.loads(first.carry[call.id][REASONING])
    assert kept["type"] == "reasoning" and fake[0].reasoning.issued[kept["id"]] == kept["encrypted_content"]
    history = (
        ChatMessage(role="user", content="Weather in Paris?"),
        ChatMessage(role="assistant", content="Checking.", tool_calls=[call]),
        ChatMessage(role="tool", tool_call_id=call.id, content="sunny"),
    )
    reply, _ = await _answer(openai, _call("gpt-6.1-sol", history, carried=first.carry), streamed)
    assert reply.content.startswith("Hello!")
    sent = fake[0].requests[-1].body["input"]
    assert [i.get("type", i.get("role")) for i in sent] == [
        "user",
        "reasoning",
        "assistant",
        "function_call",
        "function_call_output",
    ]
    assert fake[0].reasoning.back[-1] == kept["id"]
    # without what was kept (another provider's call, or expired) the call goes back alone
    await _answer(openai, _call("gpt-6.1-sol", history), streamed)
    assert "reasoning" not in [i.get("type") for i in fake[0].requests[-1].body["input"]]


def test_a_failed_responses_error_code_maps_to_the_taxonomy() -> None:
    from switchyard.executor.providers.openai.responses import failed

    kinds = {
        code: getattr(failed({"code": code, "message": "m"}), "kind", None)
        for code in ("server_error", "rate_limit_exceeded", "context_length_exceeded", "invalid_prompt", None)
    }
    assert kinds == {
        "server_error": "overloaded",
        "rate_limit_exceeded": "rate_limited",
        "context_length_exceeded": "context_too_long",
        "invalid_prompt": "bad_request",
        None: "overloaded",  # no code: the provider's trouble, retried
    }
