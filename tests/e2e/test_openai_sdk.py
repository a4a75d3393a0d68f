"""A user's first minutes: the official OpenAI SDK against the stack that `make run` starts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import nats.js.errors
import openai
import orjson
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
    assert ids == ["auto", "local/smollm2-135m-instruct", "local/all-minilm-l6-v2"]  # chat, then embeddings
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


async def _stored_result(nats_url: str, task_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """The task's result event as the stream stored it."""
    nc = await nats.connect(nats_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = await nc.jetstream().get_last_msg("SWITCHYARD", f"switchyard.result.*.{task_id}")
                return orjson.loads(msg.data)  # type: ignore[no-any-return]
            except nats.js.errors.NotFoundError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def test_a_stream_the_client_leaves_is_stopped(stack: RunningStack) -> None:
    """The client reads a few chunks of a long answer and closes the stream: the local model stops (it
    would run for seconds more) and the task ends `task_cancelled` instead of completed."""
    stream = _client(stack).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}],
        max_tokens=400,
        stream=True,
    )
    task_id = stream.response.headers["x-switchyard-task-id"]
    for n, _ in enumerate(stream):
        if n == 2:
            break
    stream.close()
    result = asyncio.run(_stored_result(stack.nats_url, task_id))
    assert result["type"] == "switchyard.task.failed.v1", result["type"]
    assert result["data"]["error_code"] == "task_cancelled"


def test_several_answers_with_the_sdk(stack: RunningStack) -> None:
    """`n`: every answer comes back, by its index, in one response, one stream, or a legacy completion;
    the local model gives them one after another from one call, and a stream sends each as it is
    generated (token by token, the role on each one's first chunk, its finish reason when it ended),
    accumulated by index."""
    client = _client(stack)
    reply = client.chat.completions.create(model="auto", n=2, messages=QUESTION, max_tokens=12)  # type: ignore[arg-type]
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.message.content and c.finish_reason in ("stop", "length") for c in reply.choices)
    assert reply.usage is not None and reply.usage.completion_tokens >= 2

    stream = client.chat.completions.create(
        model="auto",
        n=2,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    texts: dict[int, str] = {}
    pieces: dict[int, int] = {}  # the chunks of text each answer came in
    roles: list[int] = []
    finishes: dict[int, str] = {}
    seen: list[tuple[int, str]] = []  # (index, "text" or "finish") in the order they came
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            pieces[choice.index] = pieces.get(choice.index, 0) + bool(choice.delta.content)
            if choice.delta.role:
                roles.append(choice.index)
            if choice.delta.content:
                seen.append((choice.index, "text"))
            if choice.finish_reason:
                assert choice.index not in finishes  # once each
                finishes[choice.index] = choice.finish_reason
                seen.append((choice.index, "finish"))
    assert sorted(texts) == [0, 1] and all(texts.values()), texts
    assert pieces[0] > 1 and pieces[1] > 1, pieces  # streamed as generated, not each sent whole
    assert roles == [0, 1] and sorted(finishes) == [0, 1]
    # the first answer's finish reason comes when it ended, before the second answer's first token
    assert seen.index((0, "finish")) < seen.index((1, "text")), seen
    assert usage is not None and usage.completion_tokens >= 2

    legacy = client.completions.create(model="auto", prompt="Say hello.", n=2, max_tokens=8)
    assert [c.index for c in legacy.choices] == [0, 1] and all(c.text for c in legacy.choices)

    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="auto", n=9, messages=QUESTION)  # type: ignore[arg-type]
    assert too_many.value.code == "invalid_value" and too_many.value.param == "n"


def test_a_conversation_kept_by_the_server(stack: RunningStack) -> None:
    """The Conversations API as the OpenAI Agents SDK's OpenAIConversationsSession drives it: a
    conversation created with a first turn, answered by the local model from its items, the answer's
    turn added to them, its items listed back."""
    client = _client(stack)
    conversation = client.conversations.create(
        items=[{"role": "user", "content": "My name is Ada."}], metadata={"app": "e2e"}
    )
    answer = client.responses.create(
        model="auto", input="What is my name?", conversation=conversation.id, max_output_tokens=16
    )
    assert answer.conversation is not None and answer.conversation.id == conversation.id
    assert answer.output_text
    streamed = client.responses.create(
        model="auto", input="Thanks.", conversation={"id": conversation.id}, max_output_tokens=16, stream=True
    )
    # cut at 8 tokens it may be incomplete: its turn is added all the same, as OpenAI adds it
    assert [e.type for e in streamed][-1] in ("response.completed", "response.incomplete")
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [i.role for i in items] == ["user", "user", "assistant", "user", "assistant"]  # type: ignore[union-attr]
    assert items[2].id == answer.output[-1].id
    assert client.conversations.delete(conversation.id).deleted
