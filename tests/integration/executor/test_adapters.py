"""One scenario suite, run against every HTTP adapter, each against a local server that speaks that
provider's wire protocol (JSON, SSE, error bodies, broken connections)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from switchyard.cli.processes import free_port
from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, FunctionCall, FunctionSpec, ToolCall, ToolSpec
from switchyard.executor.providers.anthropic import AnthropicProvider, AnthropicSettings
from switchyard.executor.providers.base import (
    PromptCounted,
    ProviderCall,
    Reply,
    StreamingProvider,
    TextDelta,
)
from switchyard.executor.providers.gemini import GeminiProvider, GeminiSettings
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_gemini import PROMPT_TOKENS, FakeGemini
from tests.support.fake_openai import FakeOpenAI, Recorded
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
QUESTION = "Capital of France?"


@dataclass
class Upstream:
    name: str
    fake: FakeOpenAI | FakeAnthropic | FakeGemini
    url: str

    def adapter(self, *, key: str | None = None, url: str | None = None) -> StreamingProvider:
        key = key or self.fake.api_key
        if self.name == "openai":
            return OpenAIProvider(OpenAISettings(api_key=key, base_url=f"{url or self.url}/v1"), timeout_s=10)
        if self.name == "gemini":
            return GeminiProvider(GeminiSettings(api_key=key, base_url=url or self.url), timeout_s=10)
        return AnthropicProvider(AnthropicSettings(api_key=key, base_url=url or self.url), timeout_s=10)

    def sent(self, model: str) -> Recorded:
        """The last request for `model` (Gemini names the model in the URL, the others in the body)."""
        return [
            r for r in self.fake.requests if r.body.get("model") == model or f"/models/{model}:" in r.path
        ][-1]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Upstream]]:
    openai, anthropic, gemini = FakeOpenAI(), FakeAnthropic(), FakeGemini()
    with (
        BackgroundServer(openai.app) as o,
        BackgroundServer(anthropic.app) as a,
        BackgroundServer(gemini.app) as g,
    ):
        yield {
            "openai": Upstream("openai", openai, o.url),
            "anthropic": Upstream("anthropic", anthropic, a.url),
            "gemini": Upstream("gemini", gemini, g.url),
        }


@pytest.fixture(params=["openai", "anthropic", "gemini"])
def upstream(request: pytest.FixtureRequest, servers: dict[str, Upstream]) -> Upstream:
    return servers[request.param]


@pytest.fixture
async def adapter(upstream: Upstream) -> AsyncIterator[StreamingProvider]:
    provider = upstream.adapter()
    yield provider
    await provider.aclose()  # type: ignore[attr-defined]


def call(model: str, **kw: Any) -> ProviderCall:
    messages = (ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content=QUESTION))
    return ProviderCall(model=model, messages=messages, max_tokens=50, **kw)


async def collect(
    provider: StreamingProvider, c: ProviderCall
) -> tuple[list[str], Reply | None, ProviderError | None]:
    deltas: list[str] = []
    final: Reply | None = None
    try:
        async for part in provider.stream(c):
            if isinstance(part, TextDelta):
                deltas.append(part.text)
            elif isinstance(part, Reply):
                final = part
    except ProviderError as error:
        return deltas, final, error
    return deltas, final, None


async def test_plain_answer(adapter: StreamingProvider) -> None:
    answer = await adapter.request(call("model-a"))
    assert answer.content == f"Hello! You said: {QUESTION}"
    assert answer.finish_reason == "stop" and answer.model == "model-a"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens == 6


async def test_streamed_answer(adapter: StreamingProvider) -> None:
    deltas, final, error = await collect(adapter, call("model-a"))
    assert error is None and final is not None
    assert len(deltas) > 1 and "".join(deltas) == final.content == f"Hello! You said: {QUESTION}"
    assert (
        final.finish_reason == "stop" and final.usage.completion_tokens == 6 and final.usage.prompt_tokens > 0
    )


@pytest.mark.parametrize("name", ["openai", "gemini"])
async def test_several_answers_come_from_one_call_in_their_order(
    servers: dict[str, Upstream], name: str
) -> None:
    """`n` = 3: one request with the provider's own field, the answers by their index (the fakes list them
    last first), the usage of all three."""
    upstream = servers[name]
    adapter = upstream.adapter()
    try:
        answer = await adapter.request(call("model-three", n=3))
    finally:
        await adapter.aclose()  # type: ignore[attr-defined]
    sent = upstream.sent("model-three").body
    asked = sent["n"] if name == "openai" else sent["generationConfig"]["candidateCount"]
    assert asked == 3
    said = f"Hello! You said: {QUESTION}"
    assert answer.content == said
    assert [c.content for c in answer.other_choices] == [f"{said} (answer 2)", f"{said} (answer 3)"]
    assert all(c.finish_reason == "stop" for c in answer.other_choices)
    assert answer.usage.completion_tokens == 6 + 8 + 8  # each "(answer i)" adds two words


@pytest.mark.parametrize("logprobs", [False, True])
@pytest.mark.parametrize("name", ["openai", "gemini"])
async def test_several_answers_stream_interleaved_and_end_as_the_whole_reply(
    servers: dict[str, Upstream], name: str, logprobs: bool
) -> None:
    """`n` = 3 streamed: each answer's deltas as they come, interleaved, each under its index, with its
    tokens when asked; the stream ends with the reply a plain request gets (its other answers, their
    tokens and finish reasons, the usage of all three)."""
    adapter = servers[name].adapter()
    asked = call("model-three", n=3, logprobs=logprobs)
    try:
        whole = await adapter.request(asked)
        parts = [p async for p in adapter.stream(asked)]
    finally:
        await adapter.aclose()  # type: ignore[attr-defined]
    deltas = [p for p in parts if isinstance(p, TextDelta)]
    final = parts[-1]
    assert isinstance(final, Reply)
    order = [d.choice for d in deltas if d.text]
    assert order[:3] == [0, 1, 2] and sorted(set(order)) == [0, 1, 2]  # interleaved, not one after another
    texts = ["".join(d.text for d in deltas if d.choice == i) for i in range(3)]
    assert texts == [whole.content, *(c.content for c in whole.other_choices)]
    assert (final.content, final.other_choices, final.usage) == (
        whole.content,
        whole.other_choices,
        whole.usage,
    )
    assert final.logprobs == whole.logprobs and (final.logprobs is not None) == logprobs
    if logprobs:
        for i, answer in enumerate(whole.other_choices, start=1):
            assert [t for d in deltas if d.choice == i for t in d.logprobs] == answer.logprobs


async def test_one_answer_asks_for_no_more(servers: dict[str, Upstream]) -> None:
    """`n` is left out of a request for one answer (servers that copy OpenAI's API may not take it)."""
    for name in ("openai", "gemini"):
        adapter = servers[name].adapter()
        try:
            await adapter.request(call("model-one"))
        finally:
            await adapter.aclose()  # type: ignore[attr-defined]
        sent = servers[name].sent("model-one").body
        assert "n" not in sent and "candidateCount" not in sent.get("generationConfig", {})


async def test_anthropic_is_not_sent_a_request_for_several_answers(servers: dict[str, Upstream]) -> None:
    adapter = servers["anthropic"].adapter()
    before = len(servers["anthropic"].fake.requests)
    try:
        with pytest.raises(ProviderError) as err:
            await adapter.request(call("claude-three", n=3))
    finally:
        await adapter.aclose()  # type: ignore[attr-defined]
    assert err.value.kind == "bad_request" and "one answer per request" in err.value.message
    assert len(servers["anthropic"].fake.requests) == before


# Each provider's own words for prompt-cache hits and writes -> (prompt, read, written) in our Usage.
CACHED_USAGE = {
    "openai": (2048, 1536, 0),  # prompt_tokens includes prompt_tokens_details.cached_tokens
    "anthropic": (12 + 1500 + 300, 1500, 300),  # input_tokens excludes cache reads and writes
    "gemini": (9, 4, 0),  # promptTokenCount includes cachedContentTokenCount
}


@pytest.mark.parametrize("streamed", [False, True])
async def test_prompt_cache_reads_and_writes_are_counted_apart(
    adapter: StreamingProvider, upstream: Upstream, streamed: bool
) -> None:
    if streamed:
        _, answer, error = await collect(adapter, call("cached"))
        assert error is None and answer is not None
    else:
        answer = await adapter.request(call("cached"))
    usage = answer.usage
    assert (usage.prompt_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == CACHED_USAGE[
        upstream.name
    ]
    assert usage.completion_tokens == 6
    plain = await adapter.request(call("model-a"))  # no cache: nothing counted apart
    assert (plain.usage.cache_read_tokens, plain.usage.cache_write_tokens) == (0, 0)


async def test_the_request_speaks_the_providers_protocol(
    upstream: Upstream, adapter: StreamingProvider
) -> None:
    await adapter.request(call("model-wire", temperature=0.3, stop=("\n\n",)))
    sent = upstream.sent("model-wire")
    if upstream.name == "gemini":
        assert sent.path == "/v1beta/models/model-wire:generateContent"
        assert sent.headers["x-goog-api-key"] == upstream.fake.api_key
        assert sent.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert sent.body["contents"] == [{"role": "user", "parts": [{"text": QUESTION}]}]
        config = sent.body["generationConfig"]
        assert config == {"maxOutputTokens": 50, "temperature": 0.3, "stopSequences": ["\n\n"]}
        return
    if upstream.name == "openai":
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {upstream.fake.api_key}"
        assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent.body["max_tokens"] == 50 and sent.body["stop"] == ["\n\n"]
    else:
        assert sent.path == "/v1/messages"
        assert sent.headers["x-api-key"] == upstream.fake.api_key
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert sent.body["system"] == "Be brief." and sent.body["messages"] == [
            {"role": "user", "content": QUESTION}
        ]
        assert sent.body["max_tokens"] == 50 and sent.body["stop_sequences"] == ["\n\n"]
    assert sent.body["temperature"] == 0.3


async def test_a_conversation_of_instructions_only_is_sent_with_a_turn(
    upstream: Upstream, adapter: StreamingProvider
) -> None:
    """OpenAI answers a conversation of system (or developer) messages only; Anthropic refuses a request
    without messages and Gemini one without contents, so to those the instructions go as the user's turn
    (sent as the system prompt with no turn, an `auto` request routed to Claude or Gemini failed)."""
    only = (ChatMessage(role="system", content="Be brief."), ChatMessage(role="developer", content=QUESTION))
    await adapter.request(ProviderCall(model="model-instructions", messages=only, max_tokens=50))
    sent = upstream.sent("model-instructions").body
    if upstream.name == "openai":
        assert [m["role"] for m in sent["messages"]] == ["system", "developer"]
    elif upstream.name == "anthropic":
        assert "system" not in sent
        assert sent["messages"] == [{"role": "user", "content": f"Be brief.\n\n{QUESTION}"}]
    else:
        assert "systemInstruction" not in sent
        assert sent["contents"] == [{"role": "user", "parts": [{"text": f"Be brief.\n\n{QUESTION}"}]}]


ERROR_SCENARIOS = [
    ("error-401", "auth", False),
    ("error-404", "bad_request", False),
    ("error-429", "rate_limited", True),
    ("error-500", "overloaded", True),
    ("error-503", "overloaded", True),
    ("error-529", "overloaded", True),
    ("error-context", "context_too_long", False),
    ("error-policy", "content_policy", False),
    ("garbage", "bad_response", True),
    ("break", "network", True),
]


@pytest.mark.parametrize(("model", "kind", "retryable"), ERROR_SCENARIOS)
async def test_errors_map_to_the_taxonomy(
    adapter: StreamingProvider, model: str, kind: str, retryable: bool
) -> None:
    with pytest.raises(ProviderError) as caught:
        await adapter.request(call(model))
    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)
    if kind == "rate_limited":
        assert caught.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("model", "kind", "text_first"),
    [
        ("error-429", "rate_limited", False),
        ("error-529", "overloaded", False),
        ("error-401", "auth", False),
        ("garbage", "bad_response", False),
        ("break", "network", True),
        ("stream-error", "overloaded", True),
    ],
)
async def test_stream_errors_map_to_the_taxonomy(
    adapter: StreamingProvider, model: str, kind: str, text_first: bool
) -> None:
    deltas, final, error = await collect(adapter, call(model))
    assert error is not None and error.kind == kind and final is None
    assert bool(deltas) is text_first  # a break after text is an error, never a short "success"


async def test_a_wrong_key_is_an_auth_error_and_the_key_is_not_in_the_message(upstream: Upstream) -> None:
    provider = upstream.adapter(key="sk-wrong-key-0123456789abcdef")
    with pytest.raises(ProviderError) as caught:
        await provider.request(call("model-a"))
    await provider.aclose()  # type: ignore[attr-defined]
    assert caught.value.kind == "auth" and "0123456789abcdef" not in caught.value.message


async def test_a_slow_reply_times_out(adapter: StreamingProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        await adapter.request(call("slow-3", timeout_s=0.3))
    assert caught.value.kind == "timeout"
    _, _, error = await collect(adapter, call("slow-3", timeout_s=0.3))
    assert error is not None and error.kind == "timeout"


async def test_nobody_listening_is_a_network_error(upstream: Upstream) -> None:
    provider = upstream.adapter(url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError) as caught:
        await provider.request(call("model-a"))
    await provider.aclose()  # type: ignore[attr-defined]
    assert caught.value.kind == "network" and caught.value.retryable


WEATHER = ToolSpec(
    function=FunctionSpec(
        name="get_weather",
        description="The weather in a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
)


@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_calls_come_back(adapter: StreamingProvider, streamed: bool) -> None:
    c = call("tool-call", tools=(WEATHER,), tool_choice="auto")
    if streamed:
        deltas, final, error = await collect(adapter, c)
        assert error is None and final is not None and deltas == []
    else:
        final = await adapter.request(c)
    assert final.finish_reason == "tool_calls" and final.content == ""
    [tool_call] = final.tool_calls
    assert tool_call.id and tool_call.function.name == "get_weather"
    assert orjson.loads(tool_call.function.arguments) == {"city": "Paris"}
    if isinstance(adapter, GeminiProvider):  # Gemini 3 signs the call: carried for the next turn
        assert list(final.carry) == [tool_call.id] and final.carry[tool_call.id]["gemini_thought_signature"]
    else:
        assert final.carry == {}


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
CONVERSATION = (
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="Weather in Paris?"),
    ChatMessage(
        role="assistant",
        content=None,
        tool_calls=[
            ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
        ],
    ),
    ChatMessage(role="tool", tool_call_id="call_1", content='{"celsius": 21}'),
)


async def test_tools_tool_turns_and_json_mode_speak_the_providers_protocol(
    upstream: Upstream, adapter: StreamingProvider
) -> None:
    """What a client asks beyond text (tools, a forced tool, a JSON schema, a seed, tool turns) reaches
    each provider in its own terms."""
    await adapter.request(
        ProviderCall(
            model="model-tools",
            messages=CONVERSATION,
            tools=(WEATHER,),
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
            seed=7,
        )
    )
    body = upstream.sent("model-tools").body
    if upstream.name == "openai":
        assert body["tools"] == [WEATHER.model_dump(exclude_none=True)]
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
        assert body["response_format"]["json_schema"]["schema"] == SCHEMA and body["seed"] == 7
        assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert body["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21}'}
    elif upstream.name == "anthropic":
        assert body["tools"] == [
            {"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER_PARAMS}
        ]
        assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
        assert "JSON" in body["system"] and '"required":["answer"]' in body["system"]
        assert body["messages"][1] == {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        }
        assert body["messages"][2] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": '{"celsius": 21}'}],
        }
    else:
        declaration = {
            "name": "get_weather",
            "description": "The weather in a city",
            "parametersJsonSchema": WEATHER_PARAMS,
        }
        assert body["tools"] == [{"functionDeclarations": [declaration]}]
        assert body["toolConfig"] == {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        }
        config = body["generationConfig"]
        assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == SCHEMA
        assert config["seed"] == 7
        assert body["contents"][1:] == [
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "skip_thought_signature_validator",  # Gemini 3's sentinel
                    }
                ],
            },
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "get_weather", "response": {"celsius": 21}}}],
            },
        ]


WEATHER_PARAMS = WEATHER.function.parameters


async def test_anthropic_names_the_stop_sequence_that_ended_the_answer(servers: dict[str, Upstream]) -> None:
    """So the Anthropic face can answer `stop_reason: stop_sequence` with it, as Anthropic does."""
    provider = servers["anthropic"].adapter()
    try:
        stopped = call("model-a", stop=("France", "You"))
        plain = await provider.request(stopped)
        _, streamed, error = await collect(provider, stopped)
        assert error is None and streamed is not None
        for reply in (plain, streamed):
            assert (reply.content, reply.stop_sequence, reply.finish_reason) == ("Hello! ", "You", "stop")
        assert (await provider.request(call("model-a"))).stop_sequence is None  # ended on its own
    finally:
        await provider.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "counted"), [("anthropic", (12 + 1500 + 300, 1500, 300)), ("gemini", (PROMPT_TOKENS, 4, 0))]
)
async def test_a_prompt_counted_as_the_stream_begins_is_passed_on_before_the_answer(
    servers: dict[str, Upstream], name: str, counted: tuple[int, int, int]
) -> None:
    """Anthropic counts the prompt in `message_start`, Gemini in each event's `usageMetadata`: passed on
    once, before any output (the executor puts it on the first chunk, for the Anthropic face's own
    `message_start`), cache reads and writes apart. OpenAI's stream counts at its end only."""
    provider = servers[name].adapter()
    try:
        parts = [part async for part in provider.stream(call("cached"))]
    finally:
        await provider.aclose()  # type: ignore[attr-defined]
    first = parts[0]
    assert isinstance(first, PromptCounted)
    usage = first.usage
    assert (usage.prompt_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == counted
    assert isinstance(parts[-1], Reply) and not any(isinstance(p, PromptCounted) for p in parts[1:])
