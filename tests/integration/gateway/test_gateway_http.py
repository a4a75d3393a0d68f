"""The gateway as its own process on a real nats-server and SQLite; the test plays the rest of the pipeline
on the bus, so each outcome (answer, failure, silence, broken stream) can be produced on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer, free_port
from switchyard.common import bus, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import decode, encode
from switchyard.common.events import (
    ChargedCall,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
    Usage,
)
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from switchyard.common.streaming import Chunk, encode_chunk
from switchyard.gateway.db import migrations
from switchyard.gateway.tenants import create_api_key, create_tenant
from tests.integration.gateway.harness import stored_events
from tests.support.procs import service_process

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(
    nats_server: NatsServer, tmp_path: Path, sqlite_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str]]:
    """A gateway process; a test's indirect parameter adds settings to its environment."""

    async def prepare() -> str:
        await migrations().upgrade(sqlite_url)
        engine = create_engine(sqlite_url)
        sessions = sessionmaker(engine)
        tenant = await create_tenant(sessions, name="acme")
        key, _ = await create_api_key(sessions, tenant_id=tenant.id, name="test", user_id="u1")
        await engine.dispose()
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await bus.ensure_streams(js)
        await announce(await providers_bucket(js), ProviderStatus(provider="local"))
        await nc.close()
        return key

    key = asyncio.run(prepare())
    port = free_port()
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_DATABASE_URL": sqlite_url,
        "SWITCHYARD_HTTP_PORT": str(port),
        "SWITCHYARD_TASK_TIMEOUT_S": "3",
        "SWITCHYARD_STREAM_IDLE_TIMEOUT_S": "3",
        "SWITCHYARD_MAX_BODY_BYTES": "65536",
        **getattr(request, "param", {}),
    }
    base = f"http://127.0.0.1:{port}"
    with service_process(
        "switchyard.gateway", env=env, log_path=tmp_path / "gateway.log", ready_url=f"{base}/healthz"
    ):
        yield base, key


class Pipeline:
    """Stands in for classifier+router+executor: answers each submitted task as `behaviour` says."""

    def __init__(self, nc: nats.NATS, behaviour: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.behaviour = behaviour
        self.seen: list[TaskSubmitted] = []

    async def on_task(self, msg: nats.aio.msg.Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        self.seen.append(task)
        tid = task.task_id
        if self.behaviour == "silent":
            return
        if self.behaviour.startswith("late"):  # silent a while before its first output (a model thinking)
            await asyncio.sleep(1.5)
        if self.behaviour in ("fail", "busy", "expired", "late-fail"):  # candidates down, at capacity; a task
            codes = {  # queued past its bound (the executor did not run it)
                "fail": "provider_network",
                "late-fail": "provider_timeout",
                "busy": "provider_overloaded",
                "expired": "task_expired",
            }
            out = TaskFailed(
                task_id=tid,
                tenant_id=task.tenant_id,
                error_code=codes[self.behaviour],
                error_message="every candidate failed",
                failed_at=datetime.now(UTC),
                retry_after_s=7.2 if self.behaviour == "busy" else None,
            )
            await self._result(out)
            return
        if task.request.stream:
            for seq, piece in enumerate(["Par", "is"]):
                named = "local/smollm2-135m-instruct" if seq == 0 else None  # as the executor names it
                chunk = Chunk(seq=seq, delta=piece, model=named)
                await self.nc.publish(subjects.chunk_subject(task.tenant_id, tid), encode_chunk(chunk))
            if self.behaviour == "break":
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, tid),
                    b'{"seq": 2, "error": {"code": "provider_network", "message": "upstream reset"}}',
                )
                return
            if self.behaviour == "gap":
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, tid), encode_chunk(Chunk(seq=5, delta="!"))
                )
                return
            if self.behaviour == "restart":  # a second run of the task (redelivered) starts its answer again
                await self.nc.publish(
                    subjects.chunk_subject(task.tenant_id, tid), encode_chunk(Chunk(seq=0, delta="Par"))
                )
                return
            if self.behaviour == "stall":  # text, then nothing more
                return
            await self.nc.publish(
                subjects.chunk_subject(task.tenant_id, tid),
                encode_chunk(Chunk(seq=2, done=True, finish_reason="stop")),
            )
        await self._result(
            TaskCompleted(
                task_id=tid,
                tenant_id=task.tenant_id,
                model="local/smollm2-135m-instruct",
                provider="local",
                tier="local",
                content="Paris",
                finish_reason="stop",
                usage=Usage(prompt_tokens=9, completion_tokens=2),
                attempts=1,
                latency_ms=5.0,
                provider_ms=4.0,
                completed_at=datetime.now(UTC),
            )
        )

    async def _result(self, payload: TaskCompleted | TaskFailed) -> None:
        _, raw = encode(payload, source="test")
        await self.js.publish(subjects.result_subject(payload.tenant_id, payload.task_id), raw)


@pytest.fixture
async def pipeline(nats_server: NatsServer, request: pytest.FixtureRequest) -> AsyncIterator[Pipeline]:
    nc = await nats.connect(nats_server.url)
    p = Pipeline(nc, getattr(request, "param", "answer"))
    await nc.subscribe(subjects.TASK_SUBMITTED, cb=p.on_task)
    await nc.flush()  # the server has the subscription before the test submits
    yield p
    await nc.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


BODY = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
TOKENS = "x-ratelimit-remaining-tokens"


def _error(r: httpx.Response) -> dict[str, str]:
    body = r.json()["error"]
    assert body["request_id"] == r.headers["x-request-id"] and body["request_id"].startswith("req_")
    assert body["message"]
    return body  # type: ignore[no-any-return]


async def test_answer_in_openai_shape(gateway: tuple[str, str], pipeline: Pipeline) -> None:
    base, key = gateway
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{base}/v1/chat/completions", json=BODY, headers=_auth(key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Paris"}
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    assert r.headers["x-switchyard-model"] == "local/smollm2-135m-instruct"
    assert float(r.headers["x-switchyard-overhead-ms"]) >= 0  # the gateway's time less the provider's
    task = pipeline.seen[0]
    assert task.origin == "http" and task.user_id == "u1" and task.tenant_id


async def test_streamed_answer_ends_with_done(gateway: tuple[str, str], pipeline: Pipeline) -> None:
    base, key = gateway
    async with httpx.AsyncClient() as c:
        r = await c.post(
            f"{base}/v1/chat/completions",
            json={**BODY, "stream": True, "stream_options": {"include_usage": True}},
            headers=_auth(key),
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Paris"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 11
    # the model answering, from the first chunk on (not the "auto" that was asked for), and in the header
    assert {c["model"] for c in chunks} == {"local/smollm2-135m-instruct"}
    assert r.headers["x-switchyard-model"] == "local/smollm2-135m-instruct"


@pytest.mark.parametrize(
    ("pipeline", "code"), [("break", "provider_network"), ("gap", "stream_gap")], indirect=["pipeline"]
)
async def test_broken_stream_ends_with_an_explicit_error(
    gateway: tuple[str, str], pipeline: Pipeline, code: str
) -> None:
    base, key = gateway
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key))
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    assert orjson.loads(events[-1])["error"]["code"] == code


@pytest.mark.parametrize("pipeline", ["gap", "restart"], indirect=True)
async def test_a_stream_ended_by_a_gap_stops_its_task(
    gateway: tuple[str, str], pipeline: Pipeline, nats_server: NatsServer
) -> None:
    """A gap ends the client's stream (`stream_gap`); the task must stop too. A redelivered run (its
    executor crashed mid-stream) starts the answer again from chunk 0, which the gateway cannot splice
    on: left running, it would stream (and be paid for) to its end, up to the stream cap, for nobody.
    Before, the gateway only followed such a task to its outcome: no cancellation was published."""
    base, key = gateway
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key))
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert orjson.loads(events[-1])["error"]["code"] == "stream_gap"
    task_id = pipeline.seen[0].task_id
    cancelled: list[TaskCancelled] = []
    for _ in range(3):  # each look reads the stored events for a second
        found, _ = await stored_events(nats_server.url, subjects.TASK_CANCELLED, TaskCancelled)
        cancelled = [e for e in found if e.task_id == task_id]
        if cancelled:
            break
    assert [e.task_id for e in cancelled] == [task_id]


@pytest.mark.parametrize("pipeline", ["fail"], indirect=True)
async def test_failed_task_is_a_502(gateway: tuple[str, str], pipeline: Pipeline) -> None:
    base, key = gateway
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{base}/v1/chat/completions", json=BODY, headers=_auth(key))
        rs = await c.post(f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key))
    assert r.status_code == 502 and _error(r)["code"] == "provider_network"
    assert rs.status_code == 502, "a stream that fails before any text gets a real HTTP error"
    assert "retry-after" not in r.headers


async def _plain_streamed_and_anthropic(base: str, key: str) -> tuple[httpx.Response, ...]:
    """The same question asked whole and streamed on the OpenAI face, and on Anthropic's."""
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{base}/v1/chat/completions", json=BODY, headers=_auth(key))
        rs = await c.post(f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key))
        anthropic = {"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}
        ra = await c.post(f"{base}/v1/messages", json=anthropic, headers=_auth(key))
    return r, rs, ra


@pytest.mark.parametrize("pipeline", ["busy"], indirect=True)
async def test_a_task_every_provider_was_too_busy_for_is_a_503_with_retry_after(
    gateway: tuple[str, str], pipeline: Pipeline
) -> None:
    """Capacity, not breakage: 503 (Anthropic's face: 529 `overloaded_error`, as Anthropic says it, the
    SDKs' OverloadedError) with the last provider's Retry-After rounded up, which the SDKs' retries
    honour."""
    r, rs, ra = await _plain_streamed_and_anthropic(*gateway)
    for response in (r, rs):
        assert response.status_code == 503 and response.headers["retry-after"] == "8"
        assert _error(response)["code"] == "provider_overloaded"
    assert ra.status_code == 529 and ra.json()["error"]["type"] == "overloaded_error"
    assert ra.headers["retry-after"] == "8" and ra.json()["error"]["code"] == "provider_overloaded"


@pytest.mark.parametrize("pipeline", ["stall"], indirect=True)
async def test_a_client_leaving_a_stream_cancels_its_task(
    gateway: tuple[str, str], pipeline: Pipeline, nats_server: NatsServer
) -> None:
    """The client reads the first text and goes away: the gateway tells the executor to stop the task
    (it would otherwise run, and be paid for, to its end), and settles the user's counters at what the
    cut call was still charged once the outcome says so. A stream that ends normally is not cancelled."""
    base, key = gateway
    pipeline.behaviour = "answer"
    async with httpx.AsyncClient(timeout=30) as c:  # the daily token counter, as the headers show it
        left = [
            int((await c.post(f"{base}/v1/chat/completions", json=BODY, headers=_auth(key))).headers[TOKENS])
            for _ in range(2)
        ]
    assert left[0] - left[1] == 11  # what the first answer used (each reserves the same before it runs)
    pipeline.behaviour = "stall"
    nc = await nats.connect(nats_server.url)
    heard: asyncio.Queue[TaskCancelled] = asyncio.Queue()

    async def on_cancelled(msg: nats.aio.msg.Msg) -> None:
        _, event = decode(msg.data, (TaskCancelled,))
        assert isinstance(event, TaskCancelled)
        heard.put_nowait(event)

    await nc.subscribe(subjects.TASK_CANCELLED, cb=on_cancelled)
    await nc.flush()
    try:
        async with (
            httpx.AsyncClient(timeout=30) as c,
            c.stream(
                "POST", f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key)
            ) as r,
        ):
            first = await anext(r.aiter_lines())
            assert orjson.loads(first.removeprefix("data: "))["choices"][0]["delta"]["content"] == "Par"
        cancelled = await asyncio.wait_for(heard.get(), 2.5)  # before the task's own timeout (3 s)
        task = pipeline.seen[-1]
        assert (cancelled.task_id, cancelled.tenant_id, cancelled.reason) == (
            task.task_id,
            task.tenant_id,
            "disconnected",
        )
        assert cancelled.user_id == "u1"
        cut = Usage(prompt_tokens=9, completion_tokens=500)  # as the executor reports the cut call
        await pipeline._result(
            TaskFailed(
                task_id=task.task_id, tenant_id=task.tenant_id, error_code="task_cancelled",
                error_message="cancelled", failed_at=datetime.now(UTC),
                charged=[ChargedCall(model="local/smollm2-135m-instruct", usage=cut)],
            )
        )  # fmt: skip
        await asyncio.sleep(0.5)
        pipeline.behaviour = "answer"  # a stream read to its end: no cancellation
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=_auth(key))
        assert r.text.rstrip().endswith("data: [DONE]")
        # since the second answer: that answer's 11 tokens and the cut stream's 509
        assert left[1] - int(r.headers[TOKENS]) == 11 + 509
        await asyncio.sleep(0.5)
        assert heard.empty()
    finally:
        await nc.close()


@pytest.mark.parametrize("pipeline", ["silent"], indirect=True)
async def test_a_client_leaving_before_a_plain_answer_cancels_its_task(
    gateway: tuple[str, str], pipeline: Pipeline, nats_server: NatsServer
) -> None:
    """Not streamed: the client gives up (its own timeout) and closes the connection; the gateway notices
    without waiting for the task and cancels it, well before the task's own timeout (3 s here)."""
    base, key = gateway
    nc = await nats.connect(nats_server.url)
    heard: asyncio.Queue[TaskCancelled] = asyncio.Queue()
    timed_out: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_cancelled(msg: nats.aio.msg.Msg) -> None:
        _, event = decode(msg.data, (TaskCancelled,))
        assert isinstance(event, TaskCancelled)
        heard.put_nowait(event)

    async def on_timed_out(msg: nats.aio.msg.Msg) -> None:
        timed_out.put_nowait(msg.data)

    await nc.subscribe(subjects.TASK_CANCELLED, cb=on_cancelled)
    await nc.subscribe(subjects.TASK_TIMED_OUT, cb=on_timed_out)
    await nc.flush()
    try:
        async with httpx.AsyncClient(timeout=0.5) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.post(f"{base}/v1/chat/completions", json=BODY, headers=_auth(key))
        cancelled = await asyncio.wait_for(heard.get(), 2.0)
        assert (cancelled.task_id, cancelled.reason) == (pipeline.seen[0].task_id, "disconnected")
        await asyncio.sleep(3.0)  # past the task timeout: the gateway no longer waited for it
        assert timed_out.empty()
    finally:
        await nc.close()


async def test_bad_requests(gateway: tuple[str, str], pipeline: Pipeline) -> None:
    base, key = gateway
    url = f"{base}/v1/chat/completions"
    async with httpx.AsyncClient() as c:
        cases = {
            "no key": await c.post(url, json=BODY),
            "wrong key": await c.post(url, json=BODY, headers=_auth("sy_AAAAAAAA_" + "b" * 32)),
            "not ours": await c.post(url, json=BODY, headers=_auth("sk-123")),
            "malformed": await c.post(url, content=b"{", headers=_auth(key)),
            "no messages": await c.post(url, json={"model": "auto", "messages": []}, headers=_auth(key)),
            "unknown model": await c.post(url, json={**BODY, "model": "gpt-imaginary"}, headers=_auth(key)),
            "unconfigured provider": await c.post(
                url, json={**BODY, "model": "openai/gpt-4o"}, headers=_auth(key)
            ),
            "top_logprobs alone": await c.post(url, json={**BODY, "top_logprobs": 2}, headers=_auth(key)),
            "logit_bias": await c.post(url, json={**BODY, "logit_bias": {"1": 5}}, headers=_auth(key)),
            "web search": await c.post(url, json={**BODY, "web_search_options": {}}, headers=_auth(key)),
            "10 MB": await c.post(url, content=b"x" * (10 * 1024 * 1024), headers=_auth(key)),
            "no route": await c.get(f"{base}/v1/nothing", headers=_auth(key)),
            "wrong method": await c.get(url, headers=_auth(key)),
        }
    expected = {
        "no key": (401, "missing_api_key"),
        "wrong key": (401, "invalid_api_key"),
        "not ours": (401, "invalid_api_key"),
        "malformed": (400, "invalid_json"),
        "no messages": (400, "invalid_value"),
        "unknown model": (404, "model_not_found"),
        "unconfigured provider": (404, "model_not_found"),
        "top_logprobs alone": (400, "invalid_value"),
        "logit_bias": (400, "unsupported_parameter"),
        "web search": (400, "unsupported_parameter"),  # not answered without the search it asks for
        "10 MB": (413, "request_too_large"),
        "no route": (404, "not_found"),
        "wrong method": (405, "method_not_allowed"),
    }
    got = {name: (r.status_code, _error(r)["code"]) for name, r in cases.items()}
    assert got == expected
    # the client's mistake, said as every other one (README, Errors); RFC 9110 15.5.6: what the route takes
    assert _error(cases["wrong method"])["type"] == "invalid_request_error"
    assert cases["wrong method"].headers["allow"] == "POST"
    assert "SWITCHYARD_MAX_BODY_BYTES" in _error(cases["10 MB"])["message"]  # the setting to raise
    assert pipeline.seen == [], "no bad request may become a task"


async def test_models_lists_what_is_available(gateway: tuple[str, str]) -> None:
    base, key = gateway
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{base}/v1/models", headers=_auth(key))
        unauth = await c.get(f"{base}/v1/models")
    ids = [m["id"] for m in r.json()["data"]]
    # the local chat model and the local embedding model (as OpenAI's list holds its embedding models)
    assert ids == ["auto", "local/smollm2-135m-instruct", "local/all-minilm-l6-v2"]
    assert unauth.status_code == 401


async def test_one_model_is_retrieved_as_the_openai_sdk_asks_for_it(gateway: tuple[str, str]) -> None:
    """`client.models.retrieve(id)`: GET /v1/models/{id}, ids with a slash included."""
    base, key = gateway
    async with httpx.AsyncClient() as c:
        found = {
            m: await c.get(f"{base}/v1/models/{m}", headers=_auth(key))
            for m in ("auto", "local/smollm2-135m-instruct")
        }
        missing = {
            m: await c.get(f"{base}/v1/models/{m}", headers=_auth(key)) for m in ("gpt-9", "openai/gpt-4o")
        }
        unauth = await c.get(f"{base}/v1/models/auto")
    assert {m: (r.status_code, r.json()) for m, r in found.items()} == {
        "auto": (200, {"id": "auto", "object": "model", "created": 0, "owned_by": "switchyard"}),
        "local/smollm2-135m-instruct": (
            200,
            {"id": "local/smollm2-135m-instruct", "object": "model", "created": 0, "owned_by": "local"},
        ),
    }
    # openai/... would pass through, but no executor announced an OpenAI provider here
    assert {m: (r.status_code, _error(r)["code"]) for m, r in missing.items()} == {
        "gpt-9": (404, "model_not_found"),
        "openai/gpt-4o": (404, "model_not_found"),
    }
    assert unauth.status_code == 401


async def test_readyz_names_the_services_that_do_not_answer(gateway: tuple[str, str]) -> None:
    base, _ = gateway
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{base}/readyz", params={"strict": "true"})
        lenient = await c.get(f"{base}/readyz")
        m = await c.get(f"{base}/metrics")
    assert r.status_code == 503 and r.json()["status"] == "not_ready"
    # Without `strict` the gateway stays in the load balancer: tasks wait in JetStream for the others.
    assert lenient.status_code == 200 and lenient.json()["status"] == "degraded"
    assert lenient.json()["services"] == r.json()["services"]
    assert r.json()["services"] == {
        "gateway": True,
        "classifier": False,
        "router": False,
        "executor": False,
        "billing": False,
        "audit": False,
    }
    assert "switchyard_gateway_requests_total" in m.text
