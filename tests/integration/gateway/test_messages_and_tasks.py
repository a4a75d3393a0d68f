"""More ingress: the Anthropic Messages endpoint driven by the official Anthropic SDK (plain and
streamed), and the native task API (submit without waiting, status and result, cancel), per tenant."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import documents, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskCancelled, TaskSubmitted, Usage
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from tests.integration.gateway.harness import Answerer, Org, auth, gateway_stack, make_org
from tests.support import claude_code, media

pytestmark = pytest.mark.integration


COUNTS = 16  # token counts per user and minute in this module's gateway (acme's member counts 13)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, Org, Org]]:
    tmp = tmp_path_factory.mktemp("ingress")
    env = {"SWITCHYARD_LIMIT_USER_COUNTS_PER_MIN": str(COUNTS)}
    with gateway_stack(tmp, env=env) as (server, db_url, (base,)):
        a = asyncio.run(make_org(db_url, "acme", roles=("member",), plan="pro"))
        b = asyncio.run(make_org(db_url, "globex", roles=("member",)))
        yield server, base, a, b


@pytest.fixture
async def answerer(stack: tuple[NatsServer, str, Org, Org]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0].url)
    yield me
    await me.close()


def _anthropic_error(error: anthropic.APIStatusError, kind: str) -> dict[str, object]:
    """The error in Anthropic's shape, `{"type": "error", "error": {"type": <Anthropic's>, "message",
    ...}, "request_id"}`, of `kind`; returns its `error` object."""
    body = error.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == kind, body
    assert body["error"]["message"] and body["request_id"] == error.response.headers["x-request-id"]
    assert error.request_id == body["request_id"]  # the SDK's, from the `request-id` header
    return body["error"]  # type: ignore[no-any-return]


async def test_anthropic_sdk_plain_and_streamed(
    stack: tuple[NatsServer, str, Org, Org], answerer: Answerer
) -> None:
    _, base, a, _ = stack
    client = anthropic.AsyncAnthropic(base_url=base, api_key=a.keys["member"], max_retries=0)
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    message = await client.messages.create(model="auto", max_tokens=64, system="Be brief.", messages=ask)
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text == "Paris"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 2)
    assert message._request_id and message._request_id.startswith("req_")  # Anthropic's `request-id`
    assert [m.role for m in answerer.seen[0].request.messages] == ["system", "user"]

    async with client.messages.stream(model="auto", max_tokens=64, messages=ask) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert stream.request_id == stream.response.headers["x-request-id"]
    assert text == "Paris" and final.content[0].text == "Paris"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 2

    async with httpx.AsyncClient() as c:  # the raw wire: the event names in order
        raw = await c.post(
            f"{base}/v1/messages",
            json={"model": "auto", "max_tokens": 8, "stream": True, "messages": ask},
            headers={"x-api-key": a.keys["member"], "anthropic-version": "2023-06-01"},
        )
    names = [line[7:] for line in raw.text.splitlines() if line.startswith("event: ")]
    start = orjson.loads(next(line[6:] for line in raw.text.splitlines() if line.startswith("data: ")))
    assert start["message"]["model"] == "local/smollm2-135m-instruct"  # the model answering, not "auto"
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    # errors in Anthropic's shape: {"type": "error", "error": {"type": <Anthropic's>, "message"}}
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(model="auto", max_tokens=0, messages=ask)
    with pytest.raises(anthropic.AuthenticationError) as unknown:
        await anthropic.AsyncAnthropic(base_url=base, api_key="sy_nope", max_retries=0).messages.create(
            model="auto", max_tokens=8, messages=ask
        )
    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.create(model="claude-imaginary", max_tokens=8, messages=ask)
    for err, kind in (
        (bad, "invalid_request_error"),
        (unknown, "authentication_error"),
        (missing, "not_found_error"),
    ):
        _anthropic_error(err.value, kind)


async def test_a_claude_code_tool_loop_is_served_and_named_as_it_asks(
    stack: tuple[NatsServer, str, Org, Org], answerer: Answerer
) -> None:
    """Claude Code's requests as it sends them (tests/support/claude_code): its mid-conversation system
    message and attribution line taken, and its model named back as it asked, so that it sends the
    thinking blocks of a tool loop back."""
    server, base, a, _ = stack
    answerer.model = "anthropic/claude-sonnet-5-5"
    headers = {**claude_code.HEADERS, "x-api-key": a.keys["member"]}
    nc = await nats.connect(server.url)
    providers = await providers_bucket(nc.jetstream())
    await announce(providers, ProviderStatus(provider="anthropic"))
    try:
        await _served(base, headers, True)
        await _claude_code_turns(base, headers)
    finally:
        await announce(providers, ProviderStatus(provider="anthropic", available=False))
        await nc.close()
        await _served(base, headers, False)  # as the other tests expect
    first, loop = answerer.seen[0].request, answerer.seen[1].request
    assert [m.role for m in first.messages] == ["system", "user", "system"]
    assert "x-anthropic-billing-header" not in first.messages[0].text()
    assert [m.role for m in loop.messages] == ["system", "user", "system", "assistant", "tool"]
    assert loop.messages[3].thinking and loop.messages[3].thinking[0].signature == "sig-1"


async def _served(base: str, headers: dict[str, str], served: bool) -> None:
    """Waits until the gateway has seen the anthropic provider announced (or withdrawn)."""
    async with httpx.AsyncClient(base_url=base) as c:
        for _ in range(100):
            found = await c.get("/v1/models/anthropic/claude-sonnet-5-5", headers=headers)
            if (found.status_code == 200) == served:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(
        f"the gateway did not see the anthropic provider {'announced' if served else 'gone'}"
    )


async def _claude_code_turns(base: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=base) as c:
        streamed = await c.post(
            "/v1/messages?beta=true", json=claude_code.first_turn(model="claude-sonnet-5-5"), headers=headers
        )
        assert streamed.status_code == 200, streamed.text
        start = orjson.loads(streamed.text.split("data: ", 1)[1].split("\n", 1)[0])
        assert start["message"]["model"] == "claude-sonnet-5-5"
        whole = await c.post(
            "/v1/messages?beta=true",
            json=claude_code.tool_loop(model="claude-sonnet-5-5", stream=False),
            headers=headers,
        )
        assert whole.status_code == 200 and whole.json()["model"] == "claude-sonnet-5-5"
        routed = await c.post("/v1/messages", json=claude_code.first_turn(stream=False), headers=headers)
        assert routed.json()["model"] == "anthropic/claude-sonnet-5-5"  # `auto`: the model that answered


async def test_anthropic_sdk_counts_tokens_without_a_task_or_quota(
    stack: tuple[NatsServer, str, Org, Org], answerer: Answerer
) -> None:
    _, base, a, _ = stack
    client = anthropic.AsyncAnthropic(base_url=base, api_key=a.keys["member"], max_retries=0)
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    # cl100k_base: "Be brief." is 3 tokens, the question 7; 3 per message and 3 for the reply
    counted = await client.messages.count_tokens(model="auto", system="Be brief.", messages=ask)
    assert counted.input_tokens == 3 + (3 + 3) + (3 + 7)
    tool = {
        "name": "get_weather",
        "description": "The weather in a city, " + "today and tomorrow, " * 100,
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    # Claude Code counts through the beta namespace (`?beta=true`), with tools and thinking settings
    with_tool = await client.beta.messages.count_tokens(
        model="auto",
        system="Be brief.",
        messages=ask,
        tools=[tool],  # type: ignore[list-item]
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    assert with_tool.input_tokens > counted.input_tokens + 400  # the tool's 100 repeated phrases count
    turns = [
        *ask,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
    ]
    follow_up = await client.messages.count_tokens(model="auto", messages=turns, tools=[tool])  # type: ignore[list-item]
    assert follow_up.input_tokens > with_tool.input_tokens - 3  # minus the system prompt, plus two turns

    async with httpx.AsyncClient(base_url=base) as c:
        headers = {"x-api-key": a.keys["member"]}
        before = await c.post("/v1/messages", json=BODY, headers=headers)
        for _ in range(5):
            assert (await c.post("/v1/messages/count_tokens", json=BODY, headers=headers)).status_code == 200
        after = await c.post("/v1/messages", json=BODY, headers=headers)
    remaining = "x-ratelimit-remaining-requests"
    assert int(before.headers[remaining]) - int(after.headers[remaining]) == 1  # counts take no quota
    assert len(answerer.seen) == 2  # the two messages; no count ran a task

    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.count_tokens(model="claude-imaginary", messages=ask)
    with pytest.raises(anthropic.BadRequestError) as empty:
        await client.messages.count_tokens(model="auto", messages=[])
    with pytest.raises(anthropic.BadRequestError) as orphan:
        await client.messages.count_tokens(model="auto", messages=turns[2:])  # a result of no tool_use
    with pytest.raises(anthropic.AuthenticationError) as unknown:
        await anthropic.AsyncAnthropic(base_url=base, api_key="sy_nope", max_retries=0).messages.count_tokens(
            model="auto", messages=ask
        )
    for err, kind, code in (
        (missing, "not_found_error", "model_not_found"),
        (empty, "invalid_request_error", "invalid_value"),
        (orphan, "invalid_request_error", "invalid_value"),
        (unknown, "authentication_error", "invalid_api_key"),
    ):
        assert _anthropic_error(err.value, kind)["code"] == code


async def test_message_start_says_the_prompts_input_tokens(
    stack: tuple[NatsServer, str, Org, Org], answerer: Answerer
) -> None:
    """Anthropic's message_start carries the prompt's input tokens (Claude Code shows the context used from
    it); ours said 0. Now: the count the first chunk carries (the provider's, else the router's); and
    message_delta's usage, totals that the SDK's accumulator puts in their place, is the final one: the
    SDK's final usage is the answer's, never the start's added or left over."""
    _, base, a, _ = stack
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    headers = {"x-api-key": a.keys["member"], "anthropic-version": "2023-06-01"}

    async def events() -> list[tuple[str, dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=base) as c:
            body = {"model": "auto", "max_tokens": 8, "stream": True, "messages": ask}
            raw = (await c.post("/v1/messages", json=body, headers=headers)).text
        lines = raw.splitlines()
        return [(n[7:], orjson.loads(d[6:])) for n, d in itertools.pairwise(lines) if n[:7] == "event: "]

    # the router's count (what the executor puts on the first chunk when the provider gives none)
    answerer.prompt_usage = Usage(prompt_tokens=13)
    first = dict(await events())
    assert first["message_start"]["message"]["usage"] == {"input_tokens": 13, "output_tokens": 0}
    assert first["message_delta"]["usage"] == {"input_tokens": 9, "output_tokens": 2}

    # the provider counted 1,200 (1,000 read from its cache) at the start; the answer says 1,209 and 2
    answerer.prompt_usage = Usage(prompt_tokens=1200, cache_read_tokens=1000)
    answerer.usage = Usage(prompt_tokens=1209, completion_tokens=2, cache_read_tokens=1000)
    second = dict(await events())
    assert second["message_start"]["message"]["usage"] == {
        "input_tokens": 200,
        "output_tokens": 0,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 0,
    }
    client = anthropic.AsyncAnthropic(base_url=base, api_key=a.keys["member"], max_retries=0)
    async with client.messages.stream(model="auto", max_tokens=8, messages=ask) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (209, 2)
    assert final.usage.cache_read_input_tokens == 1000

    # an answer that read nothing from the cache after all: the start's 1,000 is not left standing
    answerer.usage = Usage(prompt_tokens=1209, completion_tokens=2)
    async with client.messages.stream(model="auto", max_tokens=8, messages=ask) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (1209, 0)


async def test_count_tokens_counts_images_and_pdf_pages(stack: tuple[NatsServer, str, Org, Org]) -> None:
    """Claude Code decides when to compact from this count: a pasted screenshot and a PDF count as Anthropic
    documents (width x height / 750; 1,500-3,000 a page), not ~0 as before."""
    _, base, a, _ = stack
    client = anthropic.AsyncAnthropic(base_url=base, api_key=a.keys["member"], max_retries=0)
    ask = {"type": "text", "text": "What is in these?"}
    bare = await client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": [ask]}])
    png = base64.b64encode(media.png(1000, 1000)).decode()
    pdf = base64.b64encode(media.pdf(3)).decode()
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
        ask,
    ]
    counted = await client.messages.count_tokens(
        model="auto", messages=[{"role": "user", "content": content}]
    )  # type: ignore[misc, list-item]
    assert counted.input_tokens == bare.input_tokens + 1334 + 3 * documents.TOKENS_PER_PAGE


async def test_token_counts_have_a_window_of_their_own(
    stack: tuple[NatsServer, str, Org, Org], answerer: Answerer
) -> None:
    _, base, _, b = stack  # globex's member: no counts before this test
    if 60 - time.time() % 60 < 15:  # all in one minute window
        await asyncio.sleep(60 - time.time() % 60 + 0.1)
    headers = {"x-api-key": b.keys["member"]}
    async with httpx.AsyncClient(base_url=base) as c:
        statuses = [
            (await c.post("/v1/messages/count_tokens", json=BODY, headers=headers)).status_code
            for _ in range(COUNTS)
        ]
        refused = await c.post("/v1/messages/count_tokens", json=BODY, headers=headers)
        message = await c.post("/v1/messages", json=BODY, headers=headers)
    assert statuses == [200] * COUNTS
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    error = refused.json()
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert error["error"]["code"] == "rate_limit_exceeded"
    assert f"token counts per min (user): limit {COUNTS}" in error["error"]["message"]
    assert message.status_code == 200  # messages have their own limits, untouched by counts


BODY = {"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": "capital of France?"}]}


async def _until(c: httpx.AsyncClient, url: str, key: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        got = (await c.get(url, headers=auth(key))).json()
        if got["status"] == status or time.monotonic() > deadline:
            return got  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)


async def test_task_api_submit_read_cancel_per_tenant(
    stack: tuple[NatsServer, str, Org, Org], answerer: Answerer
) -> None:
    server, base, a, b = stack
    async with httpx.AsyncClient(base_url=base) as c:
        submitted = await c.post("/v1/tasks", json=BODY, headers=auth(a.keys["member"]))
        assert submitted.status_code == 202, submitted.text
        task = submitted.json()
        assert task["status"] == "queued" and task["object"] == "task"
        done = await _until(c, f"/v1/tasks/{task['id']}", a.keys["member"], "completed")
        assert done["status"] == "completed"
        assert done["result"]["content"] == "Paris" and done["result"]["usage"]["total_tokens"] == 11  # type: ignore[index]

        # Another organisation cannot read or cancel it.
        other = await c.get(f"/v1/tasks/{task['id']}", headers=auth(b.keys["member"]))
        other_cancel = await c.delete(f"/v1/tasks/{task['id']}", headers=auth(b.keys["member"]))
        assert (other.status_code, other_cancel.status_code) == (404, 404)
        missing = await c.get("/v1/tasks/nope", headers=auth(a.keys["member"]))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        long = await c.get(f"/v1/tasks/{'n' * 5000}", headers=auth(a.keys["member"]))  # not echoed whole
        assert long.json()["error"]["message"] == f"no task '{'n' * 80}' in this organisation"

        # Cancel a task that is still running: it stays cancelled when its cut run's failure arrives
        # (an answer that came after all is delivered: test_task_api_bodies).
        answerer.hold = True
        held = (await c.post("/v1/tasks", json=BODY, headers=auth(a.keys["member"]))).json()
        cancelled = await c.delete(f"/v1/tasks/{held['id']}", headers=auth(a.keys["member"]))
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        answerer.fail = "task_cancelled"
        await answerer.release()
        answerer.fail = None
        await asyncio.sleep(0.3)
        after = (await c.get(f"/v1/tasks/{held['id']}", headers=auth(a.keys["member"]))).json()
        assert after["status"] == "cancelled"
        bad = await c.post(
            "/v1/tasks", json={"model": "auto", "messages": []}, headers=auth(a.keys["member"])
        )
        assert bad.status_code == 400
    nc = await nats.connect(server.url)
    msg = await nc.jetstream().get_last_msg(subjects.STREAM_EVENTS, subjects.TASK_CANCELLED)
    await nc.close()
    _, event = decode(msg.data, (TaskCancelled,))
    assert event.task_id == held["id"] and event.tenant_id == a.id  # type: ignore[attr-defined]


async def _submitted_events(url: str, task_id: str) -> int:
    """How many `task.submitted` events for this task the events stream holds: reads exactly what the
    consumer had pending when created (no idle timeout deciding the end, which a loaded machine can hit)."""
    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream(timeout=30).pull_subscribe(subjects.TASK_SUBMITTED, durable=None)
        left = (await sub.consumer_info()).num_pending
        count = 0
        while left > 0:
            batch = await sub.fetch(min(left, 100), timeout=30)
            left -= len(batch)
            for msg in batch:
                _, task = decode(msg.data, (TaskSubmitted,))
                count += task.task_id == task_id  # type: ignore[attr-defined]
        return count
    finally:
        await nc.close()


async def test_task_api_idempotency_key_gives_a_retry_the_first_task(
    stack: tuple[NatsServer, str, Org, Org], answerer: Answerer
) -> None:
    server, base, a, b = stack
    keyed = {**auth(a.keys["member"]), "Idempotency-Key": "order-42"}
    async with httpx.AsyncClient(base_url=base) as c:
        first = await c.post("/v1/tasks", json=BODY, headers=keyed)
        assert first.status_code == 202, first.text
        task = first.json()
        assert task["idempotency_key"] == "order-42" and "request_sha256" not in task
        await _until(c, f"/v1/tasks/{task['id']}", a.keys["member"], "completed")
        again = await c.post("/v1/tasks", json=BODY, headers=keyed)
        assert again.status_code == 202 and again.json()["id"] == task["id"]
        assert again.json()["status"] == "completed", "the retry sees the first request's outcome"

        # The same key in another organisation is another task; a different body is refused.
        other = await c.post(
            "/v1/tasks", json=BODY, headers={**auth(b.keys["member"]), "Idempotency-Key": "order-42"}
        )
        assert other.status_code == 202 and other.json()["id"] != task["id"]
        changed = await c.post("/v1/tasks", json={**BODY, "max_tokens": 7}, headers=keyed)
        assert changed.status_code == 409, changed.text
        assert changed.json()["error"]["code"] == "idempotency_key_reused"
        too_long = await c.post("/v1/tasks", json=BODY, headers={**keyed, "Idempotency-Key": "k" * 256})
        assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "idempotency-key"

        # Retries racing each other: one task, submitted once.
        burst = {**auth(a.keys["member"]), "Idempotency-Key": "burst-1"}
        answers = await asyncio.gather(*(c.post("/v1/tasks", json=BODY, headers=burst) for _ in range(5)))
        assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
        ids = {r.json()["id"] for r in answers}
        assert len(ids) == 1
    assert await _submitted_events(server.url, task["id"]) == 1
    assert await _submitted_events(server.url, ids.pop()) == 1


async def test_task_ids_that_cannot_be_ours_are_not_found(stack: tuple[NatsServer, str, Org, Org]) -> None:
    _, base, a, _ = stack
    async with httpx.AsyncClient(base_url=base) as c:
        for odd in ("a b", "it's", "a.b", "x" * 200, "%00", "ü"):
            for method in ("GET", "DELETE"):
                r = await c.request(method, f"/v1/tasks/{odd}", headers=auth(a.keys["member"]))
                assert r.status_code == 404, (method, odd, r.text)
                assert r.json()["error"]["code"] == "not_found"


async def test_a_retried_submission_sees_the_outcome_its_state_does_not_say_yet(
    stack: tuple[NatsServer, str, Org, Org], answerer: Answerer
) -> None:
    """The state still says `queued` when the replica that followed the task stopped before writing its
    outcome: a retry with the key answers from the result event, as a status read does."""
    server, base, a, _ = stack
    keyed = {**auth(a.keys["member"]), "Idempotency-Key": "outlived-its-replica"}
    async with httpx.AsyncClient(base_url=base) as c:
        first = (await c.post("/v1/tasks", json=BODY, headers=keyed)).json()
        await _until(c, f"/v1/tasks/{first['id']}", a.keys["member"], "completed")
        nc = await nats.connect(server.url)
        try:
            bucket = await nc.jetstream().key_value(subjects.KV_TASKS)
            stored = orjson.loads((await bucket.get(first["id"])).value or b"{}")
            await bucket.put(first["id"], orjson.dumps({**stored, "status": "queued", "result": None}))
        finally:
            await nc.close()
        again = (await c.post("/v1/tasks", json=BODY, headers=keyed)).json()
    assert again["id"] == first["id"] and again["status"] == "completed"
    assert again["result"]["content"] == "Paris"
