"""What the task API (and the routes beside it) answer to odd input: a body field it does not know, a
`stream: true` it cannot serve, a path with a trailing slash. One gateway on a real nats-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from tests.integration.gateway.harness import Answerer, Org, auth, gateway_stack, make_org

pytestmark = pytest.mark.integration

BODY = {"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "capital of France?"}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, Org]]:
    tmp = tmp_path_factory.mktemp("task-bodies")
    with gateway_stack(tmp) as (server, db_url, (base,)):
        yield server, base, asyncio.run(make_org(db_url, "acme", roles=("member",)))


@pytest.fixture
async def answerer(stack: tuple[NatsServer, str, Org]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0].url)
    yield me
    await me.close()


def _error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["request_id"] == r.headers["x-request-id"], error
    return error  # type: ignore[no-any-return]


async def test_an_unknown_field_is_refused_naming_it(
    stack: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    """A misspelt field (`max_token`) was accepted and ignored: the task ran with no limit. The task API is
    the gateway's own, as its admin and feedback APIs are, which refuse fields they do not know; the OpenAI
    fields that change nothing returned (`store`, `metadata`, ...) pass, as on chat completions."""
    _, base, org = stack
    member = auth(org.keys["member"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        typo = {**BODY, "max_token": 5}
        error = _error(await c.post("/v1/tasks", json=typo, headers=member), 400, "unknown_parameter")
        assert error["param"] == "max_token" and "max_token" in str(error["message"])
        long = {**BODY, "x" * 5000: 1}
        error = _error(await c.post("/v1/tasks", json=long, headers=member), 400, "unknown_parameter")
        assert len(str(error["message"])) < 300 and len(str(error["param"])) <= 80
        embedding = {"model": "auto", "input": "a sentence"}
        error = _error(await c.post("/v1/tasks", json=embedding, headers=member), 400, "unknown_parameter")
        assert error["param"] == "input" and "POST /v1/embeddings" in str(error["message"])
        openai = {**BODY, "store": False, "metadata": {"run": "1"}, "service_tier": "auto", "user": "u"}
        accepted = await c.post("/v1/tasks", json=openai, headers=member)
        assert accepted.status_code == 202, accepted.text
    assert len(answerer.seen) == 1, "nothing refused was submitted"


async def test_stream_true_is_refused_and_false_passes(
    stack: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    """`stream: true` was ignored: the client waited for SSE and got a 202 JSON task. The task API answers
    whole (GET the task); a stream is chat completions' (or the bus's)."""
    _, base, org = stack
    member = auth(org.keys["member"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        streamed = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
        error = _error(await c.post("/v1/tasks", json=streamed, headers=member), 400, "unsupported_parameter")
        assert error["param"] == "stream" and "/v1/chat/completions" in str(error["message"])
        whole = await c.post("/v1/tasks", json={**BODY, "stream": False}, headers=member)
        assert whole.status_code == 202, whole.text
        typed = await c.post("/v1/tasks", json={**BODY, "stream": "yes"}, headers=member)
        assert _error(typed, 400, "invalid_type")["param"] == "stream"
    assert len(answerer.seen) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/tasks/"),
        ("POST", "/v1/tasks/"),
        ("POST", "/v1/chat/completions/"),
        ("GET", "/v1/batches/"),
        ("GET", "/v1/files/"),
    ],
)
async def test_a_trailing_slash_is_a_404_in_the_house_format(
    stack: tuple[NatsServer, str, Org], method: str, path: str
) -> None:
    """It was the framework's 307 with an empty body and an absolute `Location` built from the request
    (http:// behind a proxy that ends TLS: a client following it sends its key in the clear, or, like
    httpx and curl by default, does not follow and reads an empty body). OpenAI answers such a path 404."""
    _, base, org = stack
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        r = await c.request(method, path, json=BODY, headers=auth(org.keys["member"]))
    error = _error(r, 404, "not_found")
    assert "location" not in r.headers
    assert path in str(error["message"]) and path.rstrip("/") in str(error["message"])


async def _until(c: httpx.AsyncClient, url: str, headers: dict[str, str], status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (got := (await c.get(url, headers=headers)).json())["status"] != status:
        if time.monotonic() > deadline:
            return got  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    return got  # type: ignore[no-any-return]


@pytest.mark.parametrize("late_s", [0.0, 6.0])
async def test_an_answer_that_came_after_the_cancellation_is_delivered(
    stack: tuple[NatsServer, str, Org], answerer: Answerer, late_s: float
) -> None:
    """DELETE reached the task after its answer was made (the executor's call had ended): the answer is
    billed in full, and was kept from its client as `cancelled`. It is delivered now: the task ends
    `completed` with its result, whether the answer comes while the replica still follows the task (within
    SETTLE_WAIT_S of the cancellation) or after. A task the cancellation cut stays `cancelled`."""
    _, base, org = stack
    member = auth(org.keys["member"])
    answerer.hold = True
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        task = (await c.post("/v1/tasks", json=BODY, headers=member)).json()
        cut = (await c.post("/v1/tasks", json={**BODY, "max_tokens": 21}, headers=member)).json()
        for t in (task, cut):
            cancelled = await c.delete(f"/v1/tasks/{t['id']}", headers=member)
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        await asyncio.sleep(late_s)
        held = {t.task_id: t for t in answerer.held}
        answerer.held = []
        await answerer.answer(held[task["id"]])
        answerer.fail = "task_cancelled"
        await answerer.answer(held[cut["id"]])
        done = await _until(c, f"/v1/tasks/{task['id']}", member, "completed")
        assert done["status"] == "completed" and done["result"]["content"] == "Paris", done
        await asyncio.sleep(0.3)
        still = (await c.get(f"/v1/tasks/{cut['id']}", headers=member)).json()
        assert still["status"] == "cancelled" and still["result"] is None
        again = await c.delete(f"/v1/tasks/{task['id']}", headers=member)
        assert again.json()["status"] == "completed", "answered as it ended"


async def test_a_retry_gets_its_task_when_its_model_is_no_longer_served(
    stack: tuple[NatsServer, str, Org],
) -> None:
    """A retry of an accepted task answers that task: it runs nothing, so what would refuse a new task now
    (the named model's provider gone, a guardrail, the key's allow-list) does not turn it into an error.
    It was checked as a new request first: a 404 model_not_found for a task accepted and running."""
    server, base, org = stack
    keyed = {**auth(org.keys["member"]), "Idempotency-Key": "model-gone-1"}
    named = {**BODY, "model": "local/smollm2-135m-instruct"}
    nc = await nats.connect(server.url)
    bucket = await providers_bucket(nc.jetstream())
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            first = await c.post("/v1/tasks", json=named, headers=keyed)
            assert first.status_code == 202, first.text
            await bucket.delete("local")
            deadline = time.monotonic() + 10
            while (
                new := await c.post("/v1/tasks", json=named, headers=auth(org.keys["member"]))
            ).status_code != 404:
                assert time.monotonic() < deadline, new.text
                await asyncio.sleep(0.3)
            again = await c.post("/v1/tasks", json=named, headers=keyed)
            assert again.status_code == 202, again.text
            assert again.json()["id"] == first.json()["id"]
            other = await c.post("/v1/tasks", json={**named, "max_tokens": 3}, headers=keyed)
            assert _error(other, 409, "idempotency_key_reused")
    finally:
        await announce(bucket, ProviderStatus(provider="local"))
        await nc.close()


async def test_a_retry_whose_json_is_written_otherwise_gets_its_task(
    stack: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    """An Idempotency-Key's retry is compared by what its body says, not by its bytes: a client library
    (or the same one in another run) writes the same request with its keys in another order, or spaced or
    escaped otherwise. Those got 409 idempotency_key_reused; a body that says something else still does."""
    _, base, org = stack
    keyed = {**auth(org.keys["member"]), "Idempotency-Key": "reordered-1", "content-type": "application/json"}
    first_body = (
        b'{"model":"auto","max_tokens":20,"messages":[{"role":"user","content":"capital of Fran\\u00e7e?"}]}'
    )
    retried = (
        '{\n  "messages": [ {"content": "capital of Fran\u00e7e?", "role": "user"} ],\n'
        '  "max_tokens": 20,\n  "model": "auto"\n}'
    ).encode()
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        first = await c.post("/v1/tasks", content=first_body, headers=keyed)
        assert first.status_code == 202, first.text
        again = await c.post("/v1/tasks", content=retried, headers=keyed)
        assert again.status_code == 202, again.text
        assert again.json()["id"] == first.json()["id"]
        other = retried.replace(b'"max_tokens": 20', b'"max_tokens": 21')
        refused = await c.post("/v1/tasks", content=other, headers=keyed)
        assert _error(refused, 409, "idempotency_key_reused")
        swapped = b'{"model":"auto","max_tokens":20,"messages":[{"role":"user","content":"capital?"}]}'
        assert _error(
            await c.post("/v1/tasks", content=swapped, headers=keyed), 409, "idempotency_key_reused"
        )
    assert len([t for t in answerer.seen if t.task_id == first.json()["id"]]) == 1
