"""An `Idempotency-Key` on batch creation (OpenAI's POST /v1/batches and Anthropic's POST
/v1/messages/batches), on the Batch API's test world (batches_world: two gateway processes, a real
nats-server and SQLite), through the official SDKs. Neither SDK sends the header by itself (their
`_idempotency_header` is None): a client passes it (`extra_headers`), and its retries, after a timeout, on
either replica, get the batch the first request created, run once."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.integration.gateway.batches_world import (
    Pipeline,
    World,
    chat_line,
    pipeline,
    read_jsonl,
    sdk_client,
    until_status,
    upload_lines,
    world,
)

pytestmark = pytest.mark.integration
__all__ = ["pipeline", "world"]  # fixtures


def test_neither_sdk_sends_an_idempotency_key_by_itself() -> None:
    assert openai.AsyncOpenAI(api_key="k")._idempotency_header is None
    assert anthropic.AsyncAnthropic(api_key="k")._idempotency_header is None


async def test_a_retried_batch_create_gets_the_first_batch(world: World, pipeline: Pipeline) -> None:
    _, bases, acme, other = world
    first, second = sdk_client(bases[0], acme), sdk_client(bases[1], acme)
    file_id = await upload_lines(first, [chat_line("a", "one?"), chat_line("b", "two?")])
    ask: dict[str, Any] = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    key = {"Idempotency-Key": "nightly-2026-12-06"}
    # the first request and two retries at once, on both replicas
    made = await asyncio.gather(
        first.batches.create(**ask, extra_headers=key),
        second.batches.create(**ask, extra_headers=key),
        first.batches.create(**ask, extra_headers=key),
    )
    assert len({b.id for b in made}) == 1
    done = await until_status(first, made[0].id, "completed", "failed")
    assert done.status == "completed" and done.request_counts.completed == 2
    again = await second.batches.create(**ask, extra_headers=key)  # a retry after it ended
    assert again.id == done.id and again.status == "completed"
    assert len(await read_jsonl(first, done.output_file_id)) == 2
    assert len(pipeline.seen) == 2  # each line ran once
    listed = [b.id for b in (await first.batches.list(limit=100)).data if b.input_file_id == file_id]
    assert listed == [done.id]

    with pytest.raises(openai.ConflictError) as refused:  # another body under the key
        await first.batches.create(**{**ask, "metadata": {"x": "y"}}, extra_headers=key)
    assert refused.value.code == "idempotency_key_reused"
    # another organisation's same key is its own
    theirs = await upload_lines(sdk_client(bases[0], other), [chat_line("c", "three?")])
    other_batch = await sdk_client(bases[0], other).batches.create(
        **{**ask, "input_file_id": theirs}, extra_headers=key
    )
    assert other_batch.id != done.id
    with pytest.raises(openai.BadRequestError):
        await first.batches.create(**ask, extra_headers={"Idempotency-Key": "x" * 256})


async def test_a_retried_message_batch_create_gets_the_first_batch(world: World, pipeline: Pipeline) -> None:
    _, bases, acme, _ = world
    clients = [
        anthropic.AsyncAnthropic(base_url=b, api_key=acme.keys["member"], max_retries=0, timeout=30)
        for b in bases
    ]
    requests: Any = [
        {
            "custom_id": "m1",
            "params": {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        }
    ]
    key = {"Idempotency-Key": "messages-once"}
    made = await asyncio.gather(
        clients[0].messages.batches.create(requests=requests, extra_headers=key),
        clients[1].messages.batches.create(requests=requests, extra_headers=key),
    )
    assert made[0].id == made[1].id
    with pytest.raises(anthropic.ConflictError) as refused:  # another body under the key
        await clients[0].messages.batches.create(
            requests=[{**requests[0], "custom_id": "m2"}], extra_headers=key
        )
    assert "Idempotency-Key" in refused.value.message
    listed = [b.id async for b in clients[0].messages.batches.list(limit=100)]
    assert listed.count(made[0].id) == 1


async def test_a_message_batch_retry_whose_json_is_written_otherwise_gets_the_first_batch(
    world: World, pipeline: Pipeline
) -> None:
    """The retry's body is compared by what its requests say (each one's custom_id and params), not byte
    for byte: the same requests with their keys in another order and other whitespace are the same batch
    (they were 409 idempotency_key_reused); other params are not."""
    _, bases, acme, _ = world
    headers = {
        "Authorization": f"Bearer {acme.keys['member']}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "Idempotency-Key": "messages-reordered",
    }
    first = (
        b'{"requests":[{"custom_id":"m1","params":{"model":"auto","max_tokens":8,'
        b'"messages":[{"role":"user","content":"hi"}]}}]}'
    )
    retried = (
        b'{ "requests": [ { "params": { "messages": [ { "content": "hi", "role": "user" } ],\n'
        b'   "max_tokens": 8, "model": "auto" }, "custom_id": "m1" } ] }'
    )
    async with httpx.AsyncClient(timeout=30) as c:
        made = await c.post(f"{bases[0]}/v1/messages/batches", content=first, headers=headers)
        assert made.status_code == 200, made.text
        again = await c.post(f"{bases[1]}/v1/messages/batches", content=retried, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == made.json()["id"]
        other = retried.replace(b'"max_tokens": 8', b'"max_tokens": 9')
        refused = await c.post(f"{bases[0]}/v1/messages/batches", content=other, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["type"] == "invalid_request_error"
