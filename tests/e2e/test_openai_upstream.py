"""The stack that `make run` starts with an OpenAI-compatible upstream (the stand-in speaks OpenAI's wire,
logprobs included) and a policy of its own: token log probabilities, which the official SDK asks for on
each face, JSON and streamed, and reads each output token with its alternatives (a model that returns none
refused with the reason); model aliases, the names a client's code sends served by the policy's
models; and what the SDKs see when a stream ends early: a call its client left billed for its whole
prompt, a provider failing mid-stream said in the face's own terms."""

from __future__ import annotations

import contextlib
import sqlite3
import time
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


def _call_usage(stack: RunningStack, task_id: str) -> list[tuple[str, int, int, int]]:
    """The task's billed calls (kind `call`: cut, cancelled): outcome, prompt, completion, estimated."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.closing(
            sqlite3.connect(f"file:{stack.var_dir / 'switchyard.db'}?mode=ro", uri=True)
        ) as db:
            rows = db.execute(
                "SELECT outcome, prompt_tokens, completion_tokens, usage_estimated FROM call_usage_entries "
                "WHERE task_id = ?",
                (task_id,),
            ).fetchall()
        if rows:
            return rows
        time.sleep(0.25)
    raise AssertionError(f"no call of task {task_id} was billed")


def test_a_stream_its_client_leaves_is_billed_for_the_tools_it_was_sent(upstream_stack: RunningStack) -> None:
    """An app offers its tools (a coding agent's run to tens of thousands of tokens) and its user stops the
    answer: the provider bills the whole prompt it was sent, tools included, and so must the cut call's
    estimate. Before, it counted the messages' text only: 4 prompt tokens for a prompt of ~3,150."""
    description = (
        "Look up the weather forecast for a city and return a detailed report. " * 14
    )  # under OpenAI's 1,024 characters
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"forecast_{i}",
                "description": description,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
        for i in range(14)
    ]
    raw = _client(upstream_stack).chat.completions.with_raw_response.create(
        model="openai/drip-0.3",
        messages=[{"role": "user", "content": "Tell me a story."}],
        tools=tools,  # type: ignore[arg-type]
        stream=True,
    )
    task_id = raw.headers["x-switchyard-task-id"]
    stream = raw.parse()
    for seen, _ in enumerate(stream):
        if seen == 2:
            break
    stream.close()  # the user stopped it
    counted = anthropic.Anthropic(base_url=upstream_stack.base_url, api_key=upstream_stack.api_key).messages
    prompt = counted.count_tokens(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a story."}],
        tools=[
            {
                "name": t["function"]["name"],
                "description": description,
                "input_schema": t["function"]["parameters"],
            }
            for t in tools
        ],
    ).input_tokens
    [(outcome, prompt_tokens, completion_tokens, estimated)] = _call_usage(upstream_stack, task_id)
    assert (outcome, estimated) == ("cancelled", 1)
    assert prompt > 2500 and 0.8 * prompt <= prompt_tokens <= 1.25 * prompt, (prompt_tokens, prompt)
    assert completion_tokens > 0


def test_a_stream_failing_after_its_text_is_said_as_anthropic_says_it(upstream_stack: RunningStack) -> None:
    """The provider fails mid-stream as busy (`stream-error`: a 500 `server_error` after some text): the
    Messages stream's `error` event says `overloaded_error`, as Anthropic's own mid-stream overload does
    and as the same failure before the stream is answered (529), with our code beside it. Clients retry on
    that type (Claude Code reads it from the error); before, every mid-stream failure was `api_error`."""
    claude = anthropic.Anthropic(
        base_url=upstream_stack.base_url, api_key=upstream_stack.api_key, max_retries=0
    )
    text: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        claude.messages.stream(model="openai/stream-error", max_tokens=50, messages=QUESTION) as stream,  # type: ignore[arg-type]
    ):
        text.extend(stream.text_stream)
    assert text, "the failure came after text"
    body = failed.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert (body["error"]["type"], body["error"]["code"]) == ("overloaded_error", "provider_overloaded"), body
    with pytest.raises(anthropic.APIStatusError) as before:  # the same failure before any text: its status
        claude.messages.create(model="openai/error-503", max_tokens=50, messages=QUESTION)  # type: ignore[arg-type]
    assert before.value.status_code == 529 and before.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_a_stream_failing_after_its_text_is_said_as_openai_says_it(upstream_stack: RunningStack) -> None:
    """The same mid-stream failure (`stream-error`: every candidate busy) on the OpenAI faces: the chat
    stream's `error`, which the OpenAI SDK raises as an APIError whose body it is, has the type and code
    the same failure before the stream is answered with (503 `service_unavailable`,
    `provider_overloaded`; it was `api_error`); the Responses stream's `response.failed` says
    `server_error` (the nearest code ResponseError allows) with that type beside it."""
    client = _client(upstream_stack)
    text: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        chunks = client.chat.completions.create(model="openai/stream-error", messages=QUESTION, stream=True)  # type: ignore[arg-type]
        for chunk in chunks:
            text.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(text), "the failure came after text"
    assert (failed.value.type, failed.value.code) == ("service_unavailable", "provider_overloaded")
    with pytest.raises(openai.APIStatusError) as before:
        client.chat.completions.create(model="openai/error-503", messages=QUESTION)  # type: ignore[arg-type]
    # (its code is provider_circuit_open once the breaker has opened on the failures before it)
    assert (before.value.status_code, before.value.type) == (503, "service_unavailable")
    events = list(client.responses.create(model="openai/stream-error", input="The capital?", stream=True))
    ended = events[-1]
    assert ended.type == "response.failed" and ended.response.error is not None
    assert (ended.response.error.code, ended.response.error.type) == ("server_error", "service_unavailable")
