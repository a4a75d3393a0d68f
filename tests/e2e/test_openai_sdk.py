"""A user's first minutes: the official OpenAI SDK against the stack that `make run` starts."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def _client(stack: RunningStack, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=f"{stack.base_url}/v1", api_key=key or stack.api_key, max_retries=0, timeout=120)


def test_auto_routes_to_the_local_model_and_answers(stack: RunningStack) -> None:
    raw = _client(stack).chat.completions.with_raw_response.create(
        model="auto",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=40,
    )
    reply = raw.parse()
    # Self-timed: the gateway's time minus the executor's wait on the model (which here is local and slow).
    assert 0 <= float(raw.headers["x-switchyard-overhead-ms"]) < 10_000
    text = reply.choices[0].message.content or ""
    assert "paris" in text.lower(), text
    assert reply.model == "local/smollm2-135m-instruct"
    assert reply.usage is not None and reply.usage.prompt_tokens > 5 and reply.usage.completion_tokens > 0
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_streaming_with_the_sdk(stack: RunningStack) -> None:
    stream = _client(stack).chat.completions.create(
        model="auto",
        messages=QUESTION,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    pieces, finish, usage, models = [], None, None, set()
    for chunk in stream:
        models.add(chunk.model)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    text = "".join(pieces)
    assert len(pieces) > 3, "the answer arrives in several chunks"
    assert "paris" in text.lower(), text
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens > 0
    assert models == {"local/smollm2-135m-instruct"}, "every chunk names the model answering, not 'auto'"
    assert stream.response.headers["x-switchyard-model"] == "local/smollm2-135m-instruct"


def test_pinned_model_and_the_model_list(stack: RunningStack) -> None:
    client = _client(stack)
    ids = [m.id for m in client.models.list()]
    assert ids == ["auto", "local/smollm2-135m-instruct"]
    reply = client.chat.completions.create(
        model="local/smollm2-135m-instruct", messages=QUESTION, max_tokens=16
    )  # type: ignore[arg-type]
    assert reply.model == "local/smollm2-135m-instruct" and reply.choices[0].message.content


def test_sdk_sees_our_errors(stack: RunningStack) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        _client(stack, key="sy_AAAAAAAA_" + "x" * 32).chat.completions.create(model="auto", messages=QUESTION)  # type: ignore[arg-type]
    assert auth.value.status_code == 401
    with pytest.raises(openai.NotFoundError) as missing:
        _client(stack).chat.completions.create(model="no-such-model", messages=QUESTION)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found"
    assert missing.value.response.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.BadRequestError):
        _client(stack).chat.completions.create(model="auto", messages=[])
