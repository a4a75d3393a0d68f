"""The stack that `make run` starts with an OpenAI-compatible upstream (the stand-in speaks OpenAI's wire,
logprobs included) and a policy of its own: token log probabilities, which the official SDK asks for on
each face, JSON and streamed, and reads each output token with its alternatives (a model that returns none
refused with the reason); and model aliases, the names a client's code sends served by the policy's
models."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx2
import openai
import pytest
import yaml
from openai import OpenAI

from switchyard.common.policy import DEFAULT_POLICY
from tests.e2e.conftest import RunningStack, start_stack, stop_stack
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.e2e
MODEL = "openai/gpt-4.1-mini"  # passed through as named (the bundled policy's GPT-6 names are OpenAI's own)
LISTED = "openai/gpt-4.1-nano"  # listed by this stack's policy, with an alias
ALIASES = {"gpt-4o-mini": LISTED, "smart": "auto"}
QUESTION = [{"role": "user", "content": "Name the capital of France."}]


@pytest.fixture(scope="module")
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture(scope="module")
def upstream_stack(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with BackgroundServer(fake.app) as server:
        base = tmp_path_factory.mktemp("upstream")
        policy = yaml.safe_load(DEFAULT_POLICY.read_text())
        policy["models"].append(
            {
                "id": LISTED,
                "provider": "openai",
                "upstream": "gpt-4.1-nano",
                "tier": "fast",
                "input_per_1k": 0.0001,
                "output_per_1k": 0.0004,
                "context_window": 1_000_000,
                "capabilities": ["tools", "json_mode", "choices", "logprobs"],
            }
        )
        policy["aliases"] = ALIASES
        (base / "policy.yaml").write_text(yaml.safe_dump(policy))
        env = {
            "OPENAI_API_KEY": fake.api_key,
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "SWITCHYARD_POLICY_PATH": str(base / "policy.yaml"),
        }
        running = start_stack(base / "var", base / "up.log", env=env)
        try:
            yield running
        finally:
            stop_stack(running)


def _client(stack: RunningStack) -> OpenAI:
    return OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.api_key, max_retries=0, timeout=120)


def test_chat_completions_return_each_tokens_log_probability(upstream_stack: RunningStack) -> None:
    reply = _client(upstream_stack).chat.completions.create(
        model=MODEL,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=40,
        logprobs=True,
        top_logprobs=2,
    )
    assert reply.model == MODEL
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    for t in tokens:
        assert t.logprob <= 0 and t.bytes == list(t.token.encode())
        assert len(t.top_logprobs) == 2
        assert [a.logprob for a in t.top_logprobs] == sorted(
            (a.logprob for a in t.top_logprobs), reverse=True
        )

    plain = _client(upstream_stack).chat.completions.create(
        model=MODEL,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=40,
    )
    assert plain.choices[0].logprobs is None  # not asked: none, as OpenAI answers


def test_a_stream_carries_each_chunks_tokens(upstream_stack: RunningStack) -> None:
    stream = _client(upstream_stack).chat.completions.create(
        model=MODEL,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=40,
        logprobs=True,
        top_logprobs=1,
        stream=True,
    )
    text, tokens = [], []
    for chunk in stream:
        if not chunk.choices:
            continue
        text.append(chunk.choices[0].delta.content or "")
        if chunk.choices[0].logprobs is not None and chunk.choices[0].logprobs.content:
            tokens.extend(chunk.choices[0].logprobs.content)
    assert len(tokens) > 1 and "".join(t.token for t in tokens) == "".join(text)
    assert all(len(t.top_logprobs) == 1 for t in tokens)


def test_legacy_completions_and_responses_return_them_in_their_shapes(upstream_stack: RunningStack) -> None:
    client = _client(upstream_stack)
    legacy = client.completions.create(
        model=MODEL, prompt="Name the capital of France.", max_tokens=30, logprobs=1
    )
    logprobs = legacy.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.text_offset
    text = legacy.choices[0].text
    assert "".join(logprobs.tokens) == text
    assert logprobs.text_offset == [
        sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    assert logprobs.top_logprobs is not None
    assert all(token in top for token, top in zip(logprobs.tokens, logprobs.top_logprobs, strict=True))

    response = client.responses.create(
        model=MODEL,
        input="Name the capital of France.",
        max_output_tokens=30,
        include=["message.output_text.logprobs"],
        top_logprobs=1,
    )
    part = response.output[0].content[0]  # type: ignore[union-attr]
    assert part.type == "output_text" and part.logprobs
    assert "".join(t.token for t in part.logprobs) == part.text == response.output_text


def test_a_model_that_returns_none_is_refused_with_the_reason(upstream_stack: RunningStack) -> None:
    client = _client(upstream_stack)
    with pytest.raises(openai.BadRequestError) as lacking:
        client.chat.completions.create(
            model="local/smollm2-135m-instruct",
            messages=QUESTION,  # type: ignore[arg-type]
            logprobs=True,
        )
    assert lacking.value.code == "model_lacks_capability" and "logprobs" in lacking.value.message
    with pytest.raises(openai.BadRequestError) as alone:
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,  # type: ignore[arg-type]
            top_logprobs=2,
        )
    assert alone.value.code == "invalid_value" and "top_logprobs" in alone.value.message


def test_an_alias_is_answered_by_the_model_it_stands_for(upstream_stack: RunningStack) -> None:
    """A client whose code says "gpt-4o-mini" is served by the model the policy names for it, sees the
    alias in the model list, and is billed for the model that answered."""
    client = _client(upstream_stack)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=20,
    )
    reply = raw.parse()
    assert reply.model == LISTED and raw.headers["x-switchyard-model"] == LISTED
    assert reply.choices[0].message.content
    models = {m.id: m.owned_by for m in client.models.list()}
    assert models["gpt-4o-mini"] == "openai" and models["smart"] == "switchyard"
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)  # type: ignore[arg-type]


def test_a_provider_key_that_is_wrong_is_asked_once_not_three_times(
    upstream_stack: RunningStack, fake: FakeOpenAI
) -> None:
    """The provider answers 401 (`error-401`: the executor's key for it is wrong): the gateway's 502
    `provider_auth` says `x-should-retry: false`, so the official SDKs, with their default two retries,
    send the request once (they sent it three times, and the provider was asked three times)."""
    sent: list[str] = []
    # the SDKs' own HTTP client (httpx2, which the Anthropic SDK insists on), counting what they send
    http = httpx2.Client(event_hooks={"request": [lambda r: sent.append(r.url.path)]}, timeout=120)
    client = OpenAI(
        base_url=f"{upstream_stack.base_url}/v1", api_key=upstream_stack.api_key, http_client=http
    )
    assert client.max_retries == 2  # the SDK's default
    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(model="openai/error-401", messages=QUESTION)  # type: ignore[arg-type]
    assert sent == ["/v1/chat/completions"]
    assert (refused.value.status_code, refused.value.code) == (502, "provider_auth")
    assert refused.value.response.headers["x-should-retry"] == "false"
    claude = anthropic.Anthropic(
        base_url=upstream_stack.base_url, api_key=upstream_stack.api_key, http_client=http, max_retries=2
    )
    with pytest.raises(anthropic.InternalServerError) as said:
        claude.messages.create(model="openai/error-401", max_tokens=20, messages=QUESTION)  # type: ignore[arg-type]
    assert said.value.status_code == 502 and said.value.response.headers["x-should-retry"] == "false"
    assert sent == ["/v1/chat/completions", "/v1/messages"]
    assert fake.scenarios.calls["error-401"] == 2  # once per request: the executor does not retry a 401
