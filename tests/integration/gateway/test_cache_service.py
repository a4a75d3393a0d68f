"""The response cache's service layer on a real nats-server (JetStream KV), the real MiniLM embedder, and
both semantic backends: Qdrant Edge (embedded default) and qdrant-client (local mode, the server path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, subjects, vectors
from switchyard.common.embedding.embedder import Embedder
from switchyard.common.embedding.model_files import ensure_built
from switchyard.common.envelope import decode
from switchyard.common.events import ChatRequest, EmbeddingRequest, TaskCompleted, TaskSubmitted, Usage
from switchyard.common.ids import new_id
from switchyard.gateway.cache.backends import EdgeIndex, QdrantIndex, VectorIndex
from switchyard.gateway.cache.exact import ExactStore, answer_key, cache_bucket
from switchyard.gateway.cache.models import CacheConfig, CacheRule, Directive
from switchyard.gateway.cache.service import Configs, ResponseCache
from tests.support.tasks import completed as answer

pytestmark = pytest.mark.integration
QUESTION = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"
DEFAULT = CacheConfig(enabled=True, semantic=True, ttl_s=60, threshold=0.92)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    files = ensure_built()[0]
    return Embedder(files.int8, files.tokenizer)


@pytest.fixture(params=["edge", "qdrant-client"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    if request.param == "edge":
        made: VectorIndex = EdgeIndex(tmp_path / "edge")
    else:
        from qdrant_client import QdrantClient

        made = QdrantIndex(QdrantClient(":memory:"))
    yield made
    made.close()


@pytest.fixture
async def parts(nats_server: NatsServer) -> AsyncIterator[tuple[nats.NATS, ExactStore, bus.EventPublisher]]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    yield nc, ExactStore(await cache_bucket(js, max_ttl_s=3600)), bus.EventPublisher(js, source="test")
    await nc.close()


def task(tenant: str, content: str, **fields: Any) -> TaskSubmitted:
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": content}], **fields})
    return TaskSubmitted(
        task_id=new_id(), tenant_id=tenant, user_id="u1", request=request, submitted_at=datetime.now(UTC)
    )


def completed(t: TaskSubmitted, content: str = "Paris") -> TaskCompleted:
    return answer(
        t.task_id,
        t.tenant_id,
        content=content,
        model="local/smollm2-135m-instruct",
        provider="local",
        tier="local",
        usage=Usage(prompt_tokens=9, completion_tokens=2),
        latency_ms=100.0,
    )


async def ask(cache: ResponseCache, tenant: str, content: str, **directive: bool) -> Any:
    return await cache.lookup(
        tenant_id=tenant, plan="pro", task=task(tenant, content), directive=Directive(**directive)
    )


async def remember(cache: ResponseCache, tenant: str, content: str, answer: str = "Paris") -> TaskSubmitted:
    t = task(tenant, content)
    found = await cache.lookup(tenant_id=tenant, plan="pro", task=t, directive=Directive())
    assert found is not None and found.hit is None
    assert await cache.keep(found, completed(t, answer))
    return t


async def test_exact_and_semantic_hits_stay_inside_their_tenant(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher], index: VectorIndex, embedder: Embedder
) -> None:
    nc, store, events = parts
    cache = ResponseCache(
        store=store, configs=Configs(DEFAULT), events=events, index=index, embedder=embedder
    )
    source = await remember(cache, "acme", QUESTION)

    exact = await ask(cache, "acme", QUESTION)
    assert exact.hit is not None and exact.hit.kind == "exact" and exact.hit.answer.content == "Paris"
    assert exact.headers == {"x-switchyard-cache": "hit", "x-switchyard-cache-kind": "exact"}
    semantic = await ask(cache, "acme", PARAPHRASE)
    assert semantic.hit is not None and semantic.hit.kind == "semantic"
    assert 0.92 <= semantic.hit.similarity < 1.0
    assert semantic.headers["x-switchyard-cache-similarity"] == f"{semantic.hit.similarity:.4f}"
    assert semantic.hit.answer.source_task_id == source.task_id
    # a different question is not a neighbour
    assert (await ask(cache, "acme", "What is the capital of Germany?")).hit is None
    # nor one that differs in a number or a negation, however close its embedding (0.906, 0.989)
    await remember(cache, "acme", "What is 17*23?", answer="391")
    await remember(cache, "acme", "Is it safe to eat raw chicken?", answer="No")
    assert (await ask(cache, "acme", "What is 17*24?")).hit is None
    assert (await ask(cache, "acme", "Is it not safe to eat raw chicken?")).hit is None
    assert (await ask(cache, "acme", "What is 17 * 23 ?")).hit.answer.content == "391"
    # nor the same words in another order (0.989)
    await remember(cache, "acme", "Convert miles to kilometers", answer="x 1.609")
    assert (await ask(cache, "acme", "Convert kilometers to miles")).hit is None
    assert (await ask(cache, "acme", "convert miles to kilometers, please")).hit.answer.content == "x 1.609"
    # another tenant never gets acme's answer: not by the same request, not by a paraphrase
    for content in (QUESTION, PARAPHRASE):
        other = await ask(cache, "globex", content)
        assert other.hit is None and other.headers == {"x-switchyard-cache": "miss"}
    # ...and its own answer to the same question stays its own
    await remember(cache, "globex", QUESTION, answer="Paris (globex)")
    assert (await ask(cache, "globex", PARAPHRASE)).hit.answer.content == "Paris (globex)"
    assert (await ask(cache, "acme", PARAPHRASE)).hit.answer.content == "Paris"

    # a hit is published as the new task's result, marked as a cache hit, with the original answer
    sub = await nc.subscribe(subjects.RESULT_ALL)
    again = task("acme", QUESTION)
    found = await cache.lookup(tenant_id="acme", plan="pro", task=again, directive=Directive())
    done = await cache.answer(again, found)
    _, event = decode((await sub.next_msg(timeout=5)).data, (TaskCompleted,))
    assert isinstance(event, TaskCompleted) and event.task_id == again.task_id == done.task_id
    assert event.cache is not None and event.cache.kind == "exact"
    assert event.cache.source_task_id == source.task_id
    assert (event.content, event.usage.completion_tokens, event.attempts) == ("Paris", 2, 0)
    await cache.close()  # waits for the background hit counter
    assert await store.hits("acme", found.key) == 1


@pytest.mark.parametrize(
    ("kept", "asked", "paraphrase"),
    [
        (  # MiniLM int8 cosine 0.966
            "How much older is Alice than Bob?",
            "How much younger is Alice than Bob?",
            "By how much is Alice older than Bob?",
        ),
        (  # 0.931
            "What should I eat before a workout?",
            "What should I eat after a workout?",
            "What should I eat before working out?",
        ),
        (
            "Convert kilometers into miles",
            "Convert miles to kilometers",
            "Convert kilometers to miles",
        ),  # 0.987
        ("Give me five ideas for a party", "Give me ten ideas for a party", "Give me 5 ideas for a party"),
        (  # 0.971
            "Is the sentence 'She go to school' correct?",
            "Is the sentence 'She goes to school' correct?",
            "Is 'She go to school' a correct sentence?",
        ),
    ],
)
async def test_a_neighbour_asking_the_opposite_or_the_other_way_round_is_a_miss(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher],
    index: VectorIndex,
    embedder: Embedder,
    kept: str,
    asked: str,
    paraphrase: str,
) -> None:
    """Over the threshold to the embedding, another question to the reader: opposite words, a conversion's
    direction in other words, numbers in words. The paraphrase still finds the answer."""
    _, store, events = parts
    cache = ResponseCache(
        store=store, configs=Configs(DEFAULT), events=events, index=index, embedder=embedder
    )
    await remember(cache, "acme", kept, answer="the answer to the first question")
    assert (await ask(cache, "acme", asked)).hit is None
    near = await ask(cache, "acme", paraphrase)
    assert near.hit is not None and near.hit.kind == "semantic", paraphrase


FRAME = (
    "You are a helpful assistant for an online shop. Read the customer's message below carefully and write "
    "a polite reply in the same language, no longer than three sentences, that thanks them, addresses their "
    "concern and, when relevant, points them to our help center. Customer message: "
)


@pytest.mark.parametrize(
    ("kept", "asked"),
    [
        ("Please cancel my subscription.", "Please renew my subscription."),  # 0.968
        ("Please send my parcel to London.", "Please send my parcel to Paris."),  # 0.951
        ("Where is my parcel for order A?", "Where is my parcel for order B?"),  # 0.978
    ],
)
async def test_another_fill_of_the_same_long_frame_is_a_miss(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher],
    index: VectorIndex,
    embedder: Embedder,
    kept: str,
    asked: str,
) -> None:
    """An app's instructions inside the user turn, around each customer's message: the shared words make
    the embedding of two customers' messages close (0.95-0.98), and one customer would get the reply
    written for another. A neighbour that differs from the prompt only within a long shared frame, in a
    word that names something, is a miss; the same fill (exact) is still a hit."""
    _, store, events = parts
    cache = ResponseCache(
        store=store, configs=Configs(DEFAULT), events=events, index=index, embedder=embedder
    )
    await remember(cache, "acme", FRAME + kept, answer="the reply to the first customer")
    assert (await ask(cache, "acme", FRAME + asked)).hit is None
    assert (await ask(cache, "acme", FRAME + kept)).hit is not None


async def test_answers_expire_and_requests_can_opt_out(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher], index: VectorIndex, embedder: Embedder
) -> None:
    _, store, events = parts
    configs = Configs(DEFAULT, tenants={"acme": CacheRule(ttl_s=1.0)})
    cache = ResponseCache(store=store, configs=configs, events=events, index=index, embedder=embedder)
    await remember(cache, "acme", QUESTION)
    assert (await ask(cache, "acme", QUESTION)).hit is not None
    assert (await ask(cache, "acme", PARAPHRASE)).hit is not None
    # no-cache: not answered from the cache (the fresh answer may be stored); no-store: the cache is skipped
    skipped = await ask(cache, "acme", QUESTION, read=False)
    assert skipped.hit is None and skipped.headers == {"x-switchyard-cache": "bypass"}
    assert await ask(cache, "acme", QUESTION, read=False, write=False) is None
    await asyncio.sleep(1.2)
    assert (await ask(cache, "acme", QUESTION)).hit is None
    assert (await ask(cache, "acme", PARAPHRASE)).hit is None
    # a no-store request's answer is never kept
    t = task("acme", "Name a prime number.")
    found = await cache.lookup(
        tenant_id="acme", plan="pro", task=t, directive=Directive(read=False, write=False)
    )
    assert found is None
    bypass = await cache.lookup(tenant_id="acme", plan="pro", task=t, directive=Directive(read=False))
    assert bypass is not None
    bypass.directive = Directive(read=False, write=False)
    assert not await cache.keep(bypass, completed(t))
    assert (await ask(cache, "acme", "Name a prime number.")).hit is None
    await cache.close()


async def test_an_answer_older_than_the_readers_ttl_is_not_served_to_it(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher],
) -> None:
    """The cache is the organisation's, the TTL the reader's plan's (else the tenant's): an answer kept
    for a "pro" user for an hour is not served to a "free" user past the free plan's 60 s, nor to
    anyone once the tenant's TTL is lowered below its age."""
    _, store, events = parts
    configs = Configs(DEFAULT, plans={"pro": CacheRule(ttl_s=3600), "free": CacheRule(ttl_s=60)})
    cache = ResponseCache(store=store, configs=configs, events=events)
    t = task("acme", "Name a river in Spain.")
    found = await cache.lookup(tenant_id="acme", plan="pro", task=t, directive=Directive())
    assert found is not None and await cache.keep(found, completed(t, "Ebro"))
    kept = await store.get("acme", found.key)
    assert kept is not None
    await store.put(kept.model_copy(update={"created_at": kept.created_at - 120}))  # kept 2 minutes ago

    def asking(plan: str) -> Any:
        return cache.lookup(tenant_id="acme", plan=plan, task=t, directive=Directive())

    assert (await asking("pro")).hit.answer.content == "Ebro"
    assert (await asking("free")).hit is None
    cache.configs = Configs(DEFAULT, plans={"pro": CacheRule(ttl_s=60)})
    assert (await asking("pro")).hit is None
    await cache.close()


async def test_a_request_for_several_answers_is_neither_answered_nor_kept(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher], index: VectorIndex, embedder: Embedder
) -> None:
    """`n` > 1 asks for fresh samples: a stored answer to the same question is not one of them, and its
    answers are not kept for anyone else."""
    _, store, events = parts
    cache = ResponseCache(
        store=store, configs=Configs(DEFAULT), events=events, index=index, embedder=embedder
    )
    await remember(cache, "acme", QUESTION)
    several = task("acme", QUESTION, n=2)
    assert await cache.lookup(tenant_id="acme", plan="pro", task=several, directive=Directive()) is None
    # the one-answer request still finds its own answer, under its key of before
    assert (await ask(cache, "acme", QUESTION)).hit is not None
    await cache.close()


async def test_multi_turn_and_tool_requests_are_exact_only(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher], index: VectorIndex, embedder: Embedder
) -> None:
    _, store, events = parts
    cache = ResponseCache(
        store=store, configs=Configs(DEFAULT), events=events, index=index, embedder=embedder
    )
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    t = task("acme", QUESTION, tools=tools)
    found = await cache.lookup(tenant_id="acme", plan="pro", task=t, directive=Directive())
    assert found.text is None  # no semantic lookup, no vector stored
    await cache.keep(found, completed(t))
    same = await cache.lookup(
        tenant_id="acme", plan="pro", task=task("acme", QUESTION, tools=tools), directive=Directive()
    )
    assert same.hit is not None and same.hit.kind == "exact"
    near = task("acme", PARAPHRASE, tools=tools)
    assert (await cache.lookup(tenant_id="acme", plan="pro", task=near, directive=Directive())).hit is None
    await cache.close()


async def test_a_disabled_tenant_never_touches_the_cache(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher],
) -> None:
    _, store, events = parts
    cache = ResponseCache(
        store=store, configs=Configs(DEFAULT, plans={"free": CacheRule(enabled=False)}), events=events
    )
    assert (
        await cache.lookup(tenant_id="acme", plan="free", task=task("acme", QUESTION), directive=Directive())
        is None
    )
    found = await cache.lookup(
        tenant_id="acme", plan="pro", task=task("acme", QUESTION), directive=Directive()
    )
    assert found is not None and found.text is None  # no embedder: exact only
    started = time.perf_counter()
    await cache.close()
    assert time.perf_counter() - started < 1


async def test_embeddings_are_exact_only_and_never_read_as_chat_answers(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher], index: VectorIndex, embedder: Embedder
) -> None:
    """An embedding is kept with its vectors under its own key, found again only by the same texts (never by
    a near text), and its entry is never a chat answer: not by key, and not even if it were stored where a
    chat answer is (the stored entry says which kind it is)."""
    nc, store, events = parts
    cache = ResponseCache(
        store=store, configs=Configs(DEFAULT), events=events, index=index, embedder=embedder
    )

    def embedding_task(*texts: str) -> TaskSubmitted:
        request = EmbeddingRequest(model="local/all-minilm-l6-v2", input=list(texts))
        return TaskSubmitted(
            task_id=new_id(), tenant_id="acme", request=request, submitted_at=datetime.now(UTC)
        )

    t = embedding_task(QUESTION)
    found = await cache.lookup(tenant_id="acme", plan="pro", task=t, directive=Directive())
    assert found is not None and found.hit is None and found.text is None  # no semantic lookup
    result = vectors.pack(bytes(range(256)) * 6, count=1, dimensions=384)
    done = completed(t, "").model_copy(update={"embedding": result, "usage": Usage(prompt_tokens=8)})
    assert await cache.keep(found, done)
    again = await cache.lookup(
        tenant_id="acme", plan="pro", task=embedding_task(QUESTION), directive=Directive()
    )
    assert again is not None and again.hit is not None and again.hit.answer.embedding == result
    near = await cache.lookup(
        tenant_id="acme", plan="pro", task=embedding_task(PARAPHRASE), directive=Directive()
    )
    assert near is not None and near.hit is None
    assert (await ask(cache, "acme", QUESTION)).hit is None  # the chat request with the same text

    # the entry copied to where a chat answer of that key would be is still not a chat answer
    entry = await store.get("acme", found.key, embedding=True)
    assert entry is not None
    bucket = await nc.jetstream().key_value(subjects.KV_CACHE)
    await bucket.put(answer_key("acme", found.key), entry.model_dump_json().encode())
    assert await store.get("acme", found.key) is None
    await cache.close()


async def test_an_embedding_entry_whose_vectors_fail_their_digest_is_a_miss_and_publishes_nothing(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher],
) -> None:
    """A stored embedding is checked when it is found, before its hit is published: a corrupt entry is a
    miss (the fresh answer then replaces it), not a completed task on the bus followed by a 502."""
    nc, store, events = parts
    cache = ResponseCache(store=store, configs=Configs(DEFAULT), events=events)
    request = EmbeddingRequest(model="local/all-minilm-l6-v2", input=[QUESTION])

    def embedding_task() -> TaskSubmitted:
        return TaskSubmitted(
            task_id=new_id(), tenant_id="acme", request=request, submitted_at=datetime.now(UTC)
        )

    first = embedding_task()
    found = await cache.lookup(tenant_id="acme", plan="pro", task=first, directive=Directive())
    assert found is not None and found.hit is None
    good = vectors.pack(bytes(range(256)) * 6, count=1, dimensions=384)
    done = completed(first, "").model_copy(update={"embedding": good, "usage": Usage(prompt_tokens=8)})
    assert await cache.keep(found, done)
    entry = await store.get("acme", found.key, embedding=True)
    assert entry is not None and entry.embedding is not None
    # one byte of the stored vectors changed, the digest kept
    raw = bytearray(vectors.unpack(entry.embedding))
    raw[0] ^= 1
    bad = good.model_copy(update={"data": vectors.pack(bytes(raw), count=1, dimensions=384).data})
    bucket = await nc.jetstream().key_value(subjects.KV_CACHE)
    await bucket.put(
        answer_key("acme", found.key, embedding=True),
        entry.model_copy(update={"embedding": bad}).model_dump_json().encode(),
    )

    results = await nc.subscribe(f"{subjects.RESULT_PREFIX}.>")
    second = embedding_task()
    again = await cache.lookup(tenant_id="acme", plan="pro", task=second, directive=Directive())
    assert again is not None and again.hit is None and again.headers["x-switchyard-cache"] == "miss"
    with pytest.raises(TimeoutError):
        await results.next_msg(timeout=0.3)  # nothing published for the corrupt entry
    # the fresh answer replaces it, and is found again
    redone = completed(second, "").model_copy(update={"embedding": good, "usage": Usage(prompt_tokens=8)})
    assert await cache.keep(again, redone)
    third = await cache.lookup(tenant_id="acme", plan="pro", task=embedding_task(), directive=Directive())
    assert third is not None and third.hit is not None and third.hit.answer.embedding == good
    await cache.close()


async def test_an_erased_tenant_has_no_answer_nor_vector_left_and_the_other_keeps_its_own(
    parts: tuple[nats.NATS, ExactStore, bus.EventPublisher], index: VectorIndex, embedder: Embedder
) -> None:
    _, store, events = parts
    cache = ResponseCache(
        store=store, configs=Configs(DEFAULT), events=events, index=index, embedder=embedder
    )
    for tenant in ("acme", "acme.x", "globex"):  # `acme.x`: a tenant whose keys start with acme's
        await remember(cache, tenant, QUESTION, answer=f"Paris ({tenant})")
        hit = await ask(cache, tenant, QUESTION)
        assert hit.hit is not None
        await cache.answer(task(tenant, QUESTION), hit)  # counts the hit, in the background
        while not await store.hits(tenant, hit.key):
            await asyncio.sleep(0.01)
    near = await ask(cache, "acme", PARAPHRASE)

    def neighbour() -> object:
        vector = embedder.embed([near.text]).vectors[0]
        return index.search(vector, tenant_id="acme", scope=near.scope, threshold=0.5, now=time.time())

    assert neighbour() is not None
    assert await store.forget_tenant("acme") == 2  # its answer and its hit count
    index.forget_tenant("acme")

    assert (await ask(cache, "acme", QUESTION)).hit is None
    assert neighbour() is None  # the vector is gone, not merely the answer it pointed to
    for tenant in ("acme.x", "globex"):
        assert (await ask(cache, tenant, PARAPHRASE)).hit.answer.content == f"Paris ({tenant})"
    assert await store.forget_tenant("acme") == 0
    await cache.close()
