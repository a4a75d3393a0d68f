"""Token log probabilities through each HTTP adapter, over real HTTP, against the fake provider that speaks
its wire (which answers a request for them with its text's tokens, `fake_logprobs.py`): chat completions,
OpenAI's Responses API, Gemini; Anthropic's adapter refuses the call before sending it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage, FunctionSpec, Reasoning, TokenLogprob, ToolSpec
from switchyard.executor.providers.anthropic import AnthropicProvider, AnthropicSettings
from switchyard.executor.providers.base import ProviderCall, Reply, StreamingProvider, TextDelta
from switchyard.executor.providers.gemini import GeminiProvider, GeminiSettings
from switchyard.executor.providers.http import make_client
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from switchyard.executor.providers.openai.config import DEFAULT_BASE_URL
from tests.support import fake_logprobs
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_gemini import FakeGemini
from tests.support.fake_openai import FakeOpenAI, Recorded
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
QUESTION = "Capital of France?"
SAID = f"Hello! You said: {QUESTION}"
WEATHER = ToolSpec(
    function=FunctionSpec(
        name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}}
    )
)


class Fakes:
    def __init__(self, openai: FakeOpenAI, gemini: FakeGemini, anthropic: FakeAnthropic) -> None:
        self.openai, self.gemini, self.anthropic = openai, gemini, anthropic
        self.urls: dict[str, str] = {}

    def adapter(self, name: str, *, openai_itself: bool = False) -> StreamingProvider:
        if (
            name == "openai" and openai_itself
        ):  # the adapter believes it speaks to OpenAI, and knows its models
            settings = OpenAISettings(api_key=self.openai.api_key, base_url=DEFAULT_BASE_URL)
            return OpenAIProvider(
                settings, client=make_client(base_url=f"{self.urls['openai']}/v1", timeout_s=10)
            )
        if name == "openai":
            settings = OpenAISettings(api_key=self.openai.api_key, base_url=f"{self.urls['openai']}/v1")
            return OpenAIProvider(settings, timeout_s=10)
        if name == "gemini":
            return GeminiProvider(
                GeminiSettings(api_key=self.gemini.api_key, base_url=self.urls["gemini"]), timeout_s=10
            )
        settings = AnthropicSettings(api_key=self.anthropic.api_key, base_url=self.urls["anthropic"])
        return AnthropicProvider(settings, timeout_s=10)

    def sent(self, name: str, model: str) -> Recorded:
        fake = self.gemini if name == "gemini" else self.openai
        return [r for r in fake.requests if r.body.get("model") == model or f"/models/{model}:" in r.path][-1]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    made = Fakes(FakeOpenAI(), FakeGemini(), FakeAnthropic())
    with (
        BackgroundServer(made.openai.app) as o,
        BackgroundServer(made.gemini.app) as g,
        BackgroundServer(made.anthropic.app) as a,
    ):
        made.urls = {"openai": o.url, "gemini": g.url, "anthropic": a.url}
        yield made


def call(model: str, **kw: Any) -> ProviderCall:
    messages = (ChatMessage(role="user", content=QUESTION),)
    return ProviderCall(model=model, messages=messages, max_tokens=50, **kw)


async def answer(
    adapter: StreamingProvider, c: ProviderCall, *, streamed: bool
) -> tuple[Reply, list[TextDelta]]:
    """The reply, and its text deltas (none for a whole answer)."""
    try:
        if not streamed:
            return await adapter.request(c), []
        parts = [p async for p in adapter.stream(c)]
    finally:
        await adapter.aclose()  # type: ignore[attr-defined]
    assert isinstance(parts[-1], Reply)
    return parts[-1], [p for p in parts if isinstance(p, TextDelta)]


def assert_plausible(
    tokens: tuple[TokenLogprob, ...] | list[TokenLogprob] | None, text: str, top: int
) -> None:
    """The tokens spell the text; each has a log probability at most 0 and `top` alternatives, most
    likely first, itself among them, their probabilities adding up to at most 1."""
    assert tokens is not None and "".join(t.token for t in tokens) == text
    assert [t.token for t in tokens] == fake_logprobs.tokens(text)
    for token in tokens:
        assert token.logprob <= 0 and token.bytes is None  # ASCII and whole: its UTF-8
        assert len(token.top_logprobs) == top
        if top:
            values = [a.logprob for a in token.top_logprobs]
            assert values == sorted(values, reverse=True) and sum(math.exp(v) for v in values) <= 1
            assert (token.token, token.logprob) in [(a.token, a.logprob) for a in token.top_logprobs]


PROVIDERS = ["openai", "gemini"]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_each_answer_comes_with_its_tokens_log_probabilities(fakes: Fakes, name: str) -> None:
    reply, _ = await answer(
        fakes.adapter(name), call("lp-three", n=3, logprobs=True, top_logprobs=3), streamed=False
    )
    body = fakes.sent(name, "lp-three").body
    if name == "openai":
        assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    else:
        assert (body["generationConfig"]["responseLogprobs"], body["generationConfig"]["logprobs"]) == (
            True,
            3,
        )
    assert reply.content == SAID
    assert_plausible(reply.logprobs, SAID, 3)
    assert [c.content for c in reply.other_choices] == [f"{SAID} (answer 2)", f"{SAID} (answer 3)"]
    for other in reply.other_choices:
        assert_plausible(other.logprobs, other.content, 3)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_streams_deltas_carry_their_tokens_and_the_reply_all_of_them(fakes: Fakes, name: str) -> None:
    reply, deltas = await answer(
        fakes.adapter(name), call("lp-stream", logprobs=True, top_logprobs=2), streamed=True
    )
    assert len(deltas) > 1 and "".join(d.text for d in deltas) == reply.content == SAID
    for delta in deltas:
        assert "".join(t.token for t in delta.logprobs) == delta.text
    assert reply.logprobs == tuple(t for d in deltas for t in d.logprobs)
    assert_plausible(reply.logprobs, SAID, 2)


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_only_what_the_call_asks_is_asked(fakes: Fakes, name: str, streamed: bool) -> None:
    """Without `top_logprobs`, tokens without alternatives; a call that does not ask sends nothing and gets
    none (None, not an empty list)."""
    reply, _ = await answer(fakes.adapter(name), call("lp-bare", logprobs=True), streamed=streamed)
    body = fakes.sent(name, "lp-bare").body
    # an OpenAI-compatible server is told "no alternatives" out loud (llama.cpp's gives none without it)
    assert body.get("top_logprobs") == (0 if name == "openai" else None)
    assert "logprobs" not in body.get("generationConfig", {})
    assert_plausible(reply.logprobs, SAID, 0)
    reply, deltas = await answer(fakes.adapter(name), call("lp-none"), streamed=streamed)
    body = fakes.sent(name, "lp-none").body
    assert "logprobs" not in body and "responseLogprobs" not in body.get("generationConfig", {})
    assert reply.content == SAID and reply.logprobs is None
    assert all(d.logprobs == () for d in deltas)


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_malformed_log_probabilities_are_a_bad_response(
    fakes: Fakes, name: str, streamed: bool
) -> None:
    with pytest.raises(ProviderError) as err:
        await answer(fakes.adapter(name), call("bad-logprobs", logprobs=True), streamed=streamed)
    assert err.value.kind == "bad_response" and err.value.retryable
    reply, _ = await answer(fakes.adapter(name), call("bad-logprobs"), streamed=streamed)
    assert reply.content == SAID  # not asked for: the same upstream answers


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_openai_reasoning_model_is_asked_at_effort_none_or_not_at_all(
    fakes: Fakes, streamed: bool
) -> None:
    """OpenAI returns logprobs only at effort none (the fake too: a 400 at any other): GPT-6 Sol is asked at
    none, said out loud (its default is medium); asked for more, the call is refused and nothing is sent."""
    asked = {"logprobs": True, "top_logprobs": 1}
    reply, _ = await answer(
        fakes.adapter("openai", openai_itself=True), call("gpt-6-sol", **asked), streamed=streamed
    )
    sent = fakes.sent("openai", "gpt-6-sol").body
    assert sent["reasoning_effort"] == "none" and sent["logprobs"] is True
    assert_plausible(reply.logprobs, SAID, 1)
    before = len(fakes.openai.requests)
    with pytest.raises(ProviderError) as refused:
        await answer(
            fakes.adapter("openai", openai_itself=True),
            call("gpt-6-sol", reasoning=Reasoning(effort="high"), **asked),
            streamed=streamed,
        )
    assert refused.value.kind == "bad_request" and not refused.value.sent
    assert len(fakes.openai.requests) == before


@pytest.mark.parametrize("streamed", [False, True])
async def test_the_responses_api_gives_the_output_texts_tokens(fakes: Fakes, streamed: bool) -> None:
    """Function tools with reasoning effort none to GPT-6 go through /v1/responses."""
    c = call("gpt-6-sol", tools=(WEATHER,), reasoning=Reasoning(effort="none"), logprobs=True, top_logprobs=4)
    reply, deltas = await answer(fakes.adapter("openai", openai_itself=True), c, streamed=streamed)
    sent = fakes.sent("openai", "gpt-6-sol")
    assert sent.path == "/v1/responses" and sent.body["top_logprobs"] == 4
    assert "message.output_text.logprobs" in sent.body["include"]
    assert reply.content == SAID
    assert_plausible(reply.logprobs, SAID, 4)
    if streamed:
        assert len(deltas) > 1 and reply.logprobs == tuple(t for d in deltas for t in d.logprobs)
        assert all("".join(t.token for t in d.logprobs) == d.text for d in deltas)
    bare = call("gpt-6-sol", tools=(WEATHER,), reasoning=Reasoning(effort="none"))
    reply, deltas = await answer(fakes.adapter("openai", openai_itself=True), bare, streamed=streamed)
    sent = fakes.sent("openai", "gpt-6-sol")
    assert sent.path == "/v1/responses" and "top_logprobs" not in sent.body
    assert reply.logprobs is None and all(d.logprobs == () for d in deltas)


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_model_without_effort_none_is_not_sent_a_call_for_logprobs(
    fakes: Fakes, streamed: bool
) -> None:
    """GPT-6.1 Sol takes tools only through /v1/responses and has no effort none, so it can return no
    logprobs: refused unsent (the executor's next candidate answers), not answered without them."""
    before = len(fakes.openai.requests)
    with pytest.raises(ProviderError) as refused:
        await answer(
            fakes.adapter("openai", openai_itself=True),
            call("gpt-6.1-sol", tools=(WEATHER,), logprobs=True),
            streamed=streamed,
        )
    assert refused.value.kind == "bad_request" and not refused.value.sent
    assert "returns no token log probabilities" in refused.value.message
    assert len(fakes.openai.requests) == before


@pytest.mark.parametrize("streamed", [False, True])
async def test_malformed_responses_logprobs_are_a_bad_response(fakes: Fakes, streamed: bool) -> None:
    messages = (ChatMessage(role="user", content="bad-logprobs"),)
    c = ProviderCall(
        model="gpt-6-sol",
        messages=messages,
        tools=(WEATHER,),
        reasoning=Reasoning(effort="none"),
        logprobs=True,
    )
    with pytest.raises(ProviderError) as err:
        await answer(fakes.adapter("openai", openai_itself=True), c, streamed=streamed)
    assert err.value.kind == "bad_response"


@pytest.mark.parametrize("streamed", [False, True])
async def test_anthropic_is_not_sent_a_call_for_logprobs(fakes: Fakes, streamed: bool) -> None:
    before = len(fakes.anthropic.requests)
    with pytest.raises(ProviderError) as err:
        await answer(fakes.adapter("anthropic"), call("claude-sonnet-4-5", logprobs=True), streamed=streamed)
    assert err.value.kind == "bad_request" and not err.value.sent
    assert "returns no token log probabilities" in err.value.message
    assert len(fakes.anthropic.requests) == before
