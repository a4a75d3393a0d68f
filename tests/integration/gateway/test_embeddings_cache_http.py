"""The response cache serving `POST /v1/embeddings` (exact only), on a gateway process with the cache on, a
real nats-server and SQLite, the real billing and audit services, and the harness's Answerer as the pipeline:
a repeated request is answered from the cache with the same vectors, recorded as a cache hit (billed at zero
with its tokens marked cached, in the ledger), and never reaches the pipeline; anything that changes the
vectors misses, another tenant misses, a chat request never meets an embedding entry, large results (kept in
the object store) are not stored, and a tenant with the cache off never uses it."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import numpy as np
import orjson
import pytest
from sqlalchemy import select

from switchyard.audit.db import migrations as audit_migrations
from switchyard.audit.models import LedgerEntry
from switchyard.billing.db import migrations as billing_migrations
from switchyard.billing.models import UsageEntry
from switchyard.cli.processes import NatsServer
from switchyard.common import subjects, vectors
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import EmbeddingRequest, TaskCompleted
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from switchyard.gateway.db import migrations
from tests.integration.gateway.harness import (
    EMBED_DIMENSIONS,
    Answerer,
    Org,
    auth,
    fake_vectors,
    gateways,
    make_org,
    stored_events,
)
from tests.support.bus_services import BusService

pytestmark = pytest.mark.integration
MODEL = "local/all-minilm-l6-v2"
SMALL = "openai/text-embedding-3-small"
TEXTS = ["How do I reset my password?", "I forgot my password."]
Stack = tuple[NatsServer, str, str, Org, Org, Org]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """acme and globex with the cache on; initech with it off (a tenant rule)."""
    tmp = tmp_path_factory.mktemp("embeddings-cache")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    for made in (migrations(), billing_migrations(), audit_migrations()):
        asyncio.run(made.upgrade(db_url))
    acme, globex, initech = (asyncio.run(make_org(db_url, name)) for name in ("acme", "globex", "initech"))
    asyncio.run(_announce(server.url, "openai"))
    common = {
        "SWITCHYARD_NATS_URL": server.url,
        "SWITCHYARD_DATABASE_URL": db_url,
        "SWITCHYARD_VAR_DIR": str(tmp),
    }
    services = [
        BusService("billing", env=common, log_path=tmp / "billing.log"),
        BusService(
            "audit", env={**common, "SWITCHYARD_AUDIT_SIGNING_KEY": "44" * 32}, log_path=tmp / "audit.log"
        ),
    ]
    env = {
        "SWITCHYARD_CACHE_ENABLED": "true",
        "SWITCHYARD_CACHE_TENANTS": orjson.dumps({initech.id: {"enabled": False}}).decode(),
        "SWITCHYARD_VAR_DIR": str(tmp / "var"),
        "SWITCHYARD_LIMIT_USER_REQUESTS_PER_MIN": "1000",
    }
    try:
        with gateways(server, db_url, tmp, env=env) as (base,):
            for service in services:
                asyncio.run(service.start())
            yield server, db_url, base, acme, globex, initech
    finally:
        for service in services:
            service.stop()
        server.stop()


async def _announce(url: str, provider: str) -> None:
    nc = await nats.connect(url)
    try:
        await announce(await providers_bucket(nc.jetstream()), ProviderStatus(provider=provider))
    finally:
        await nc.close()


@pytest.fixture
async def answerer(stack: Stack) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0].url)
    yield me
    await me.close()


def embed(texts: list[str], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": texts, **fields}


def rows(response: httpx.Response) -> np.ndarray:
    """The response's vectors, decoded from floats or base64, as float32 rows."""
    data = response.json()["data"]
    if data and isinstance(data[0]["embedding"], str):
        return np.asarray([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])
    return np.asarray([d["embedding"] for d in data], dtype=np.float32)


def expected(texts: list[str], *, model: str = MODEL, dimensions: int | None = None) -> np.ndarray:
    return fake_vectors(EmbeddingRequest(model=model, input=texts, dimensions=dimensions))


def counted(metrics: str, kind: str, outcome: str) -> float:
    found = re.search(rf'switchyard_gateway_cache_total{{kind="{kind}",outcome="{outcome}"}} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


async def _rows(db_url: str, model: Any, where: Any, expected: int, timeout: float = 30.0) -> list[Any]:
    engine = create_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with sessionmaker(engine)() as session:
                found = list((await session.execute(select(model).where(where))).scalars())
            if len(found) >= expected or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def test_a_repeated_request_is_a_hit_with_the_same_vectors_billed_at_zero_and_in_the_ledger(
    stack: Stack, answerer: Answerer
) -> None:
    server, db_url, base, acme, _, _ = stack
    a = auth(acme.keys["admin"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        before = (await http.get("/metrics")).text
        first = await http.post("/v1/embeddings", json=embed(TEXTS), headers=a)
        assert first.status_code == 200, first.text
        assert (
            first.headers["x-switchyard-cache"] == "miss" and "x-switchyard-cache-kind" not in first.headers
        )
        assert len(answerer.seen) == 1
        assert rows(first).tobytes() == expected(TEXTS).tobytes()

        hits = [await http.post("/v1/embeddings", json=embed(TEXTS), headers=a) for _ in range(2)]
        as_base64 = await http.post("/v1/embeddings", json=embed(TEXTS, encoding_format="base64"), headers=a)
        assert len(answerer.seen) == 1, "no hit reached the pipeline"
        after = (await http.get("/metrics")).text
    for hit in [*hits, as_base64]:
        assert hit.status_code == 200, hit.text
        assert hit.headers["x-switchyard-cache"] == "hit"
        assert hit.headers["x-switchyard-cache-kind"] == "exact"
        assert hit.headers["x-switchyard-task-id"] != first.headers["x-switchyard-task-id"]
        assert (hit.headers["x-switchyard-model"], hit.headers["x-switchyard-tier"]) == (MODEL, "local")
        assert rows(hit).tobytes() == rows(first).tobytes()
        assert hit.json()["model"] == MODEL and hit.json()["usage"] == first.json()["usage"]
    assert hits[0].json() == first.json()  # floats as asked, the same document
    assert isinstance(as_base64.json()["data"][0]["embedding"], str)
    # a hit counts against the request limit, not the token quota: two hits in a row leave the same tokens
    remaining = [
        (int(h.headers["x-ratelimit-remaining-requests"]), h.headers["x-ratelimit-remaining-tokens"])
        for h in hits
    ]
    assert remaining[1][0] == remaining[0][0] - 1 and remaining[1][1] == remaining[0][1]
    assert counted(after, "exact", "hit") - counted(before, "exact", "hit") == 3
    assert counted(after, "any", "stored") - counted(before, "any", "stored") == 1
    assert counted(after, "any", "miss") - counted(before, "any", "miss") == 1

    # the hit is the new task's result on the bus: marked as a cache hit, with the source's vectors
    hit_id, source_id = hits[0].headers["x-switchyard-task-id"], first.headers["x-switchyard-task-id"]
    (published,), _ = await stored_events(server.url, subjects.result_subject(acme.id, hit_id), TaskCompleted)
    (source,), _ = await stored_events(server.url, subjects.result_subject(acme.id, source_id), TaskCompleted)
    assert published.cache is not None and published.cache.kind == "exact"
    assert published.cache.source_task_id == source_id and published.attempts == 0
    assert published.tenant_id == acme.id and published.user_id == acme.users["admin"]
    assert published.embedding is not None and published.embedding == source.embedding
    assert vectors.unpack(published.embedding) == expected(TEXTS).tobytes()

    # billing: zero cost, provider `cache`, the tokens kept; the ledger: the hit and its zero-cost usage
    (usage,) = await _rows(db_url, UsageEntry, UsageEntry.task_id == hit_id, 1)
    assert (usage.provider, float(usage.cost_usd), usage.prompt_tokens, usage.model) == (
        "cache",
        0.0,
        2,
        MODEL,
    )
    ledger = await _rows(db_url, LedgerEntry, LedgerEntry.resource == f"task/{hit_id}", 2)
    by_action = {e.action: orjson.loads(e.details) for e in ledger}
    complete = by_action["task.complete"]
    assert complete["cache"] == {"kind": "exact", "source_task_id": source_id}
    # the vectors' digest keyed by the tenant's ledger key (never the plain SHA-256 a guess could confirm),
    # the source's: the same vectors
    at_source = (LedgerEntry.resource == f"task/{source_id}") & (LedgerEntry.action == "task.complete")
    (sourced,) = await _rows(db_url, LedgerEntry, at_source, 1)
    source_complete = orjson.loads(sourced.details)
    assert complete["attempts"] == 0 and "sha256" not in complete["embedding"]
    assert complete["embedding"]["hmac_sha256"] == source_complete["embedding"]["hmac_sha256"]
    assert by_action["billing.usage"]["cached"] is True and by_action["billing.usage"]["cost_usd"] == 0
    assert all(e.tenant_id == acme.id for e in ledger)


async def test_what_changes_the_vectors_misses_and_another_tenant_never_reads_the_entry(
    stack: Stack, answerer: Answerer
) -> None:
    _, _, base, acme, globex, _ = stack
    a, g = auth(acme.keys["admin"]), auth(globex.keys["admin"])
    texts = ["The food was delicious.", "The weather is cold today."]
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        stored = await http.post("/v1/embeddings", json=embed(texts), headers=a)
        assert stored.headers["x-switchyard-cache"] == "miss"
        assert (await http.post("/v1/embeddings", json=embed(texts), headers=a)).headers[
            "x-switchyard-cache"
        ] == "hit"
        seen = len(answerer.seen)
        variants = {
            "another tenant": (embed(texts), g),
            "model": ({**embed(texts), "model": SMALL}, a),
            "dimensions": ({**embed(texts, dimensions=256), "model": SMALL}, a),  # SMALL's is stored now
            "one text changed": (embed([texts[0], texts[1] + " "]), a),
            "the order": (embed(texts[::-1]), a),
            "fewer texts": (embed(texts[:1]), a),
        }
        answers = {
            name: await http.post("/v1/embeddings", json=body, headers=key)
            for name, (body, key) in variants.items()
        }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        assert answer.headers["x-switchyard-cache"] == "miss", name
    assert len(answerer.seen) == seen + len(variants), "every variant reached the pipeline"
    assert [t.tenant_id for t in answerer.seen[seen:]] == [globex.id] + [acme.id] * (len(variants) - 1)
    assert rows(answers["dimensions"]).tobytes() == expected(texts, model=SMALL, dimensions=256).tobytes()
    assert rows(answers["model"]).tobytes() == expected(texts, model=SMALL).tobytes()
    assert rows(answers["the order"]).tobytes() == expected(texts[::-1]).tobytes()


async def test_no_cache_and_no_store_are_honoured(stack: Stack, answerer: Answerer) -> None:
    _, _, base, acme, _, _ = stack
    a = auth(acme.keys["admin"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        # no-cache: not answered from the cache, but the fresh vectors are stored
        fresh = await http.post(
            "/v1/embeddings", json=embed(["no-cache text"]), headers={**a, "x-switchyard-cache": "no-cache"}
        )
        assert fresh.headers["x-switchyard-cache"] == "bypass" and len(answerer.seen) == 1
        again = await http.post("/v1/embeddings", json=embed(["no-cache text"]), headers=a)
        assert again.headers["x-switchyard-cache"] == "hit" and len(answerer.seen) == 1
        skipped = await http.post(
            "/v1/embeddings", json=embed(["no-cache text"]), headers={**a, "x-switchyard-cache": "no-cache"}
        )
        assert skipped.headers["x-switchyard-cache"] == "bypass" and len(answerer.seen) == 2

        # no-store: neither read nor written
        headers = {**a, "x-switchyard-cache": "no-store"}
        unstored = await http.post("/v1/embeddings", json=embed(["no-store text"]), headers=headers)
        assert unstored.status_code == 200 and "x-switchyard-cache" not in unstored.headers
        unread = await http.post("/v1/embeddings", json=embed(["no-cache text"]), headers=headers)
        assert "x-switchyard-cache" not in unread.headers and len(answerer.seen) == 4
        after = await http.post("/v1/embeddings", json=embed(["no-store text"]), headers=a)
        assert after.headers["x-switchyard-cache"] == "miss" and len(answerer.seen) == 5

        bad = await http.post(
            "/v1/embeddings", json=embed(["x"]), headers={**a, "x-switchyard-cache": "sometimes"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-switchyard-cache"
        assert len(answerer.seen) == 5


async def test_vectors_kept_in_the_object_store_are_not_stored(stack: Stack, answerer: Answerer) -> None:
    """The executor keeps up to 256 KiB of float32 inline (170 vectors of 384 numbers): those are cached;
    171 are read from the object store, and are not."""
    _, _, base, acme, _, _ = stack
    a = auth(acme.keys["admin"])
    inline = [f"inline chunk {n}" for n in range(170)]
    large = [f"large chunk {n}" for n in range(171)]
    assert vectors.result_bytes(len(inline), EMBED_DIMENSIONS) <= vectors.INLINE_BYTES
    assert vectors.result_bytes(len(large), EMBED_DIMENSIONS) > vectors.INLINE_BYTES
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for texts in (large, large, inline, inline):
            got = await http.post("/v1/embeddings", json=embed(texts), headers=a)
            assert got.status_code == 200, got.text
            assert rows(got).tobytes() == expected(texts).tobytes()
        assert got.headers["x-switchyard-cache"] == "hit"
    assert [len(t.embedding().input) for t in answerer.seen] == [171, 171, 170]  # type: ignore[union-attr]


async def test_chat_and_embeddings_never_answer_each_other(stack: Stack, answerer: Answerer) -> None:
    _, _, base, acme, _, _ = stack
    a = auth(acme.keys["admin"])
    first, second = "What is the capital of France?", "What is the capital of Spain?"

    def chat(text: str) -> dict[str, Any]:
        return {"model": "auto", "messages": [{"role": "user", "content": text}]}

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        # an embedding stored first: the chat request with the same text misses, then finds its own answer
        assert (await http.post("/v1/embeddings", json=embed([first]), headers=a)).headers[
            "x-switchyard-cache"
        ] == "miss"
        asked = await http.post("/v1/chat/completions", json=chat(first), headers=a)
        assert asked.status_code == 200 and asked.headers["x-switchyard-cache"] == "miss"
        assert len(answerer.seen) == 2
        own = await http.post("/v1/chat/completions", json=chat(first), headers=a)
        assert (
            own.headers["x-switchyard-cache"] == "hit"
            and own.json()["choices"][0]["message"]["content"] == "Paris"
        )
        vecs = await http.post("/v1/embeddings", json=embed([first]), headers=a)
        assert (
            vecs.headers["x-switchyard-cache"] == "hit"
            and rows(vecs).tobytes() == expected([first]).tobytes()
        )
        # a chat answer stored first: the embedding request with the same text misses
        assert (await http.post("/v1/chat/completions", json=chat(second), headers=a)).headers[
            "x-switchyard-cache"
        ] == "miss"
        other = await http.post("/v1/embeddings", json=embed([second]), headers=a)
        assert other.headers["x-switchyard-cache"] == "miss"
        assert rows(other).tobytes() == expected([second]).tobytes()
    assert [t.embedding() is not None for t in answerer.seen] == [True, False, False, True]


async def test_a_tenant_with_the_cache_off_never_uses_it(stack: Stack, answerer: Answerer) -> None:
    _, _, base, _, _, initech = stack
    i = auth(initech.keys["admin"])
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answers = [await http.post("/v1/embeddings", json=embed(TEXTS), headers=i) for _ in range(2)]
        # the directive is still read, and refused when unknown, as chat's is
        bad = await http.post(
            "/v1/embeddings", json=embed(TEXTS), headers={**i, "x-switchyard-cache": "maybe"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-switchyard-cache"
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert "x-switchyard-cache" not in answer.headers
        assert rows(answer).tobytes() == expected(TEXTS).tobytes()
    assert [t.tenant_id for t in answerer.seen] == [initech.id, initech.id]
