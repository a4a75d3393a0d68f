"""`POST /v1/embeddings` on a gateway process, a real nats-server and SQLite; the harness's Answerer plays
the pipeline (its vectors derive from the texts, so the test knows what the client must get back; large
ones go through the object store, as the executor's do). The official OpenAI SDK is the client where the
shape matters: it asks for base64 by default and decodes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import nats
import numpy as np
import openai
import pytest
from nats.js.errors import ObjectNotFoundError

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects, vectors
from switchyard.common.envelope import decode
from switchyard.common.events import EmbeddingRequest, EmbeddingResult, TaskCancelled, TaskTimedOut
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from switchyard.common.tokens import encoding
from switchyard.gateway.db import migrations
from tests.integration.gateway.harness import Answerer, Org, auth, fake_vectors, gateways, make_org

pytestmark = pytest.mark.integration
MODEL = "local/all-minilm-l6-v2"  # the default policy's local embedding model (384 numbers)
SMALL = "openai/text-embedding-3-small"  # 1,536 numbers (openai is announced here; the Answerer answers)
TEXTS = ["The food was delicious.", "The weather is cold today.", "naïve café"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, Org]]:
    tmp = tmp_path_factory.mktemp("embeddings")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(migrations().upgrade(db_url))
    org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
    asyncio.run(_announce(server.url, "openai"))
    try:
        with gateways(server, db_url, tmp) as (base,):
            yield server, base, org
    finally:
        server.stop()


async def _announce(url: str, provider: str) -> None:
    nc = await nats.connect(url)
    try:
        await announce(await providers_bucket(nc.jetstream()), ProviderStatus(provider=provider))
    finally:
        await nc.close()


@pytest.fixture
async def answerer(world: tuple[NatsServer, str, Org]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(world[0].url)
    yield me
    await me.close()


def _sdk(base: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)


def _expected(texts: list[str], dimensions: int | None = None) -> np.ndarray:
    return fake_vectors(EmbeddingRequest(model=MODEL, input=texts, dimensions=dimensions))


async def test_the_sdk_gets_the_pipelines_vectors_as_base64_and_as_floats(
    world: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    _, base, org = world
    client = _sdk(base, org.keys["member"])
    raw = await client.embeddings.with_raw_response.create(model=MODEL, input=TEXTS)  # base64: the default
    reply = raw.parse()
    got = np.asarray([d.embedding for d in reply.data], dtype=np.float32)
    assert got.tobytes() == _expected(TEXTS).tobytes()
    assert [d.index for d in reply.data] == [0, 1, 2] and reply.model == MODEL
    assert (reply.usage.prompt_tokens, reply.usage.total_tokens) == (3, 3)
    task = answerer.seen[-1]
    assert raw.headers["x-switchyard-task-id"] == task.task_id
    assert (raw.headers["x-switchyard-model"], raw.headers["x-switchyard-tier"]) == (MODEL, "local")
    assert raw.headers["x-request-id"].startswith("req_")
    assert float(raw.headers["x-switchyard-overhead-ms"]) >= 0
    assert "x-ratelimit-remaining-tokens" in raw.headers
    assert task.embedding() == EmbeddingRequest(model=MODEL, input=TEXTS)
    assert (task.origin, task.user_id) == ("http", org.users["member"])
    floats = await client.embeddings.create(
        model=MODEL, input=TEXTS[0], encoding_format="float", dimensions=384
    )
    assert np.asarray(floats.data[0].embedding, dtype=np.float32).tobytes() == _expected(TEXTS[:1]).tobytes()
    assert answerer.seen[-1].embedding() == EmbeddingRequest(model=MODEL, input=TEXTS[:1], dimensions=384)


async def test_token_ids_as_langchain_sends_them_become_the_texts(
    world: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    _, base, org = world
    ids = [encoding().encode(t) for t in TEXTS]
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(
            f"{base}/v1/embeddings", json={"model": MODEL, "input": ids}, headers=auth(org.keys["member"])
        )
    assert r.status_code == 200, r.text
    assert answerer.seen[-1].embedding() == EmbeddingRequest(model=MODEL, input=TEXTS)
    got = np.asarray([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    assert got.tobytes() == _expected(TEXTS).tobytes()


async def test_tokens_are_counted_and_settled_as_the_inputs_only(
    world: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    """The day's token counter, as the headers show it: each request reserves its inputs' estimate (no
    output), and settles at the tokens the answer used (the Answerer's: one per input)."""
    _, base, org = world
    body = {"model": MODEL, "input": ["x" * 400] * 5}  # (100 + 1) tokens reserved each
    left = []
    async with httpx.AsyncClient(timeout=30) as c:
        for _ in range(3):
            r = await c.post(f"{base}/v1/embeddings", json=body, headers=auth(org.keys["member"]))
            assert r.status_code == 200, r.text
            left.append(int(r.headers["x-ratelimit-remaining-tokens"]))
    assert left[0] - left[1] == left[1] - left[2] == 5  # what each answer used: 5 tokens, nothing for output


async def test_refusals_come_before_the_pipeline(
    world: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    _, base, org = world
    key = auth(org.keys["member"])
    url = f"{base}/v1/embeddings"
    ok = {"model": MODEL, "input": "hi"}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=30) as c:
        cases = {
            "no key": await c.post(url, json=ok),
            "malformed": await c.post(url, content=b"{", headers=key),
            "empty input": await c.post(url, json={**ok, "input": []}, headers=key),
            "auto": await c.post(url, json={**ok, "model": "auto"}, headers=key),
            "a chat model": await c.post(
                url, json={**ok, "model": "local/smollm2-135m-instruct"}, headers=key
            ),
            "anthropic": await c.post(url, json={**ok, "model": "anthropic/claude-embed"}, headers=key),
            "unknown": await c.post(url, json={**ok, "model": "local/no-such-model"}, headers=key),
            "unannounced": await c.post(
                url, json={**ok, "model": "gemini/gemini-embedding-001"}, headers=key
            ),
            "length": await c.post(url, json={**ok, "dimensions": 100}, headers=key),
            # 1,025 vectors of 8,192 numbers: 33.6 MB, over the 32 MiB one answer holds (a pass-through
            # model: the length asked for is the length it gives)
            "too many vectors": await c.post(
                url,
                json={"model": "openai/text-embedding-ada-002", "input": ["x"] * 1025, "dimensions": 8192},
                headers=key,
            ),
            "too large": await c.post(url, json={**ok, "input": "x" * 70_000}, headers=key),
            "chat face": await c.post(f"{base}/v1/chat/completions", json=chat, headers=key),
            "legacy face": await c.post(
                f"{base}/v1/completions", json={"model": MODEL, "prompt": "hi"}, headers=key
            ),
            "task api": await c.post(f"{base}/v1/tasks", json=ok, headers=key),
        }
    got = {
        name: (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"])
        for name, r in cases.items()
    }
    assert got == {
        "no key": (401, "missing_api_key", None),
        "malformed": (400, "invalid_json", None),
        "empty input": (400, "invalid_value", "input"),
        "auto": (400, "model_lacks_capability", "model"),
        "a chat model": (400, "model_lacks_capability", "model"),
        "anthropic": (400, "model_lacks_capability", "model"),
        "unknown": (404, "model_not_found", "model"),
        "unannounced": (404, "model_not_found", "model"),
        "length": (400, "invalid_value", "dimensions"),
        "too many vectors": (400, "invalid_value", "input"),
        "too large": (413, "request_too_large", None),
        "chat face": (400, "model_lacks_capability", "model"),
        "legacy face": (400, "model_lacks_capability", "model"),
        "task api": (400, "unknown_parameter", "input"),
    }
    message = {name: r.json()["error"]["message"] for name, r in cases.items()}
    assert MODEL in message["auto"] and MODEL in message["a chat model"]  # what to name instead
    assert "384" in message["length"] and "send at most 1024 inputs" in message["too many vectors"]
    assert "/v1/embeddings" in message["chat face"] and "/v1/embeddings" in message["task api"]
    assert answerer.seen == [], "no refused request may become a task"


@pytest.mark.parametrize(
    ("code", "status", "client_code", "param"),
    [
        ("embedding_dimensions_unsupported", 400, "invalid_value", "dimensions"),
        ("embedding_result_too_large", 400, "invalid_value", "input"),
        ("embedding_result_unavailable", 503, "embedding_result_unavailable", None),
        ("provider_network", 502, "provider_network", None),
    ],
)
async def test_a_failed_task_is_the_clients_error_or_the_upstreams(
    world: tuple[NatsServer, str, Org],
    answerer: Answerer,
    code: str,
    status: int,
    client_code: str,
    param: str | None,
) -> None:
    _, base, org = world
    answerer.fail = code
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(
            f"{base}/v1/embeddings",
            json={"model": MODEL, "input": ["a", "b"]},
            headers=auth(org.keys["member"]),
        )
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["param"]) == (status, client_code, param)
    assert code in error["message"] and error["request_id"] == r.headers["x-request-id"]


async def test_a_large_answer_comes_through_the_object_store_and_is_deleted_after(
    world: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    """LangChain's default batch: 1,000 texts, 1,536 numbers each (6.1 MB of vectors, 24 times the inline
    limit), as base64 (the SDK's default) and as floats."""
    _, base, org = world
    client = _sdk(base, org.keys["member"])
    texts = [f"document {n}: a line of a corpus" for n in range(1000)]
    expected = _expected(texts, 1536)
    store = await answerer.js.object_store(vectors.BUCKET)
    for asked in ({}, {"encoding_format": "float"}):  # the SDK's default: base64, which it decodes
        started = time.perf_counter()
        raw = await client.embeddings.with_raw_response.create(
            model=SMALL,
            input=texts,
            dimensions=1536,
            **asked,  # type: ignore[arg-type]
        )
        reply = raw.parse()
        took = time.perf_counter() - started
        print(f"\n1,000 x 1,536 {asked or 'base64'}: {took * 1000:.0f} ms ({raw.headers['server-timing']})")
        got = np.asarray([d.embedding for d in reply.data], dtype=np.float32)
        assert got.tobytes() == expected.tobytes(), asked
        assert [d.index for d in reply.data] == list(range(1000))
        name = vectors.object_name(org.id, raw.headers["x-switchyard-task-id"])
        deadline = time.monotonic() + 5
        while True:  # deleted in the background, after the response
            try:
                await store.get_info(name)
            except ObjectNotFoundError:
                break
            assert time.monotonic() < deadline, f"the object {name} was not deleted"
            await asyncio.sleep(0.05)


async def test_vectors_the_gateway_cannot_read_are_a_502(
    world: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    _, base, org = world
    answerer.hold = True
    async with httpx.AsyncClient(timeout=30) as c:
        asking = asyncio.ensure_future(
            c.post(
                f"{base}/v1/embeddings",
                json={"model": MODEL, "input": ["a", "b"]},
                headers=auth(org.keys["member"]),
            )
        )
        while not answerer.held:
            await asyncio.sleep(0.01)
        [task] = answerer.held
        done = (await answerer._vectors(task, task.embedding())).model_copy(  # type: ignore[arg-type]
            update={
                "embedding": EmbeddingResult(
                    count=2, dimensions=384, sha256="0" * 64, object=vectors.object_name(org.id, task.task_id)
                )
            }
        )
        await answerer._result(done)  # names an object nobody kept
        r = await asking
    error = r.json()["error"]
    assert (r.status_code, error["code"]) == (502, "bad_response"), r.text
    assert "vectors are unreadable" in error["message"] and "not in switchyard-embeddings" in error["message"]


async def test_a_task_that_does_not_answer_is_a_504_and_is_recorded(
    world: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    _, base, org = world
    answerer.hold = True
    async with httpx.AsyncClient(timeout=30) as c:
        started = time.monotonic()
        r = await c.post(
            f"{base}/v1/embeddings", json={"model": MODEL, "input": "hi"}, headers=auth(org.keys["member"])
        )
        waited = time.monotonic() - started
    assert r.status_code == 504 and r.json()["error"]["code"] == "task_timeout"
    assert 2.5 < waited < 10  # the gateway's task timeout: 3 s
    msg = await answerer.js.get_last_msg(subjects.STREAM_EVENTS, subjects.TASK_TIMED_OUT)
    _, timed_out = decode(msg.data, (TaskTimedOut,))
    assert timed_out.task_id == answerer.held[-1].task_id  # type: ignore[attr-defined]


async def test_a_client_leaving_cancels_its_task(
    world: tuple[NatsServer, str, Org], answerer: Answerer
) -> None:
    _, base, org = world
    answerer.hold = True
    heard: asyncio.Queue[TaskCancelled] = asyncio.Queue()

    async def on_cancelled(msg: nats.aio.msg.Msg) -> None:
        _, event = decode(msg.data, (TaskCancelled,))
        assert isinstance(event, TaskCancelled)
        heard.put_nowait(event)

    await answerer.nc.subscribe(subjects.TASK_CANCELLED, cb=on_cancelled)
    await answerer.nc.flush()
    async with httpx.AsyncClient(timeout=0.5) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.post(
                f"{base}/v1/embeddings",
                json={"model": MODEL, "input": "hi"},
                headers=auth(org.keys["member"]),
            )
    cancelled = await asyncio.wait_for(heard.get(), 2.0)  # before the task's own timeout (3 s)
    assert (cancelled.task_id, cancelled.reason) == (answerer.held[-1].task_id, "disconnected")


async def test_the_models_list_names_the_embedding_models_too(world: tuple[NatsServer, str, Org]) -> None:
    _, base, org = world
    async with httpx.AsyncClient(timeout=30) as c:
        listed = await c.get(f"{base}/v1/models", headers=auth(org.keys["member"]))
        one = await c.get(f"{base}/v1/models/{MODEL}", headers=auth(org.keys["member"]))
    assert MODEL in [m["id"] for m in listed.json()["data"]]
    assert one.status_code == 200 and one.json() == {
        "id": MODEL,
        "object": "model",
        "created": 0,
        "owned_by": "local",
    }
