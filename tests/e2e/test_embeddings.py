"""Embeddings through the whole stack that `make run` starts: the official OpenAI SDK against
`/v1/embeddings` on the local MiniLM (no keys), the vectors sentence-transformers gives, the errors a
client sees, a request over the inline limit (its vectors through the object store), the ledger's trail
(digests, never the texts), and another system's embedding tasks on the bus, small and large."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import numpy as np
import openai
import orjson
import pytest
from openai import OpenAI

from switchyard.common import vectors
from switchyard.common.events import EmbeddingResult
from tests.e2e.conftest import RunningStack, tenant_token

pytestmark = pytest.mark.e2e
MODEL = "local/all-minilm-l6-v2"
REFERENCE = Path(__file__).parents[1] / "unit" / "classifier" / "reference_embeddings.json"
TRAIL = {"task.submit", "task.classify", "task.route", "provider.call", "task.complete", "billing.usage"}


def _client(stack: RunningStack) -> OpenAI:
    return OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.api_key, max_retries=0, timeout=120)


def _reference() -> list[tuple[str, np.ndarray]]:
    data = json.loads(REFERENCE.read_text())
    return [(s["text"], np.asarray(s["embedding"], dtype=np.float32)) for s in data["sentences"]]


def test_the_sdk_gets_sentence_transformers_vectors_from_the_local_model(stack: RunningStack) -> None:
    reference = _reference()[:3]
    texts = [text for text, _ in reference]
    # The SDK asks for base64 by default and decodes it itself.
    raw = _client(stack).embeddings.with_raw_response.create(model=MODEL, input=texts)
    reply = raw.parse()
    assert raw.headers["x-switchyard-model"] == MODEL and raw.headers["x-switchyard-task-id"]
    assert reply.model == MODEL and [d.index for d in reply.data] == [0, 1, 2]
    assert reply.usage.prompt_tokens > len(texts) and reply.usage.total_tokens == reply.usage.prompt_tokens
    for (text, expected), got in zip(reference, reply.data, strict=True):
        vector = np.asarray(got.embedding, dtype=np.float32)
        assert vector.shape == (384,), text
        assert float(vector @ expected) / float(np.linalg.norm(vector) * np.linalg.norm(expected)) > 0.9999, (
            text
        )
    # floats, asked for, are the same numbers
    floats = _client(stack).embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, reply.data[0].embedding, atol=1e-6)


def test_similar_texts_are_near(stack: RunningStack) -> None:
    reply = _client(stack).embeddings.create(
        model=MODEL,
        input=[
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "Paris is in France.",
        ],
    )
    a, b, c = (np.asarray(d.embedding) for d in reply.data)
    assert float(a @ b) > float(a @ c) + 0.3


def test_a_request_over_the_inline_limit_is_answered_whole(stack: RunningStack) -> None:
    """1,500 short texts: 2.3 MB of vectors, nine times what travels in the result event, so they come
    through the object store; the local model takes ~3 ms a text."""
    texts = [f"support ticket {n}: my invoice {n % 97} is wrong" for n in range(1500)]
    started = time.perf_counter()
    raw = _client(stack).embeddings.with_raw_response.create(model=MODEL, input=texts)
    took = time.perf_counter() - started
    reply = raw.parse()
    print(f"\n1,500 texts to {MODEL}: {took:.2f} s ({raw.headers['server-timing']})")
    assert [d.index for d in reply.data] == list(range(1500))
    got = np.asarray([d.embedding for d in reply.data], dtype=np.float32)
    assert got.shape == (1500, 384) and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-4)
    alone = _client(stack).embeddings.create(model=MODEL, input=texts[1234])  # the same text alone
    assert np.allclose(alone.data[0].embedding, got[1234], atol=1e-5)
    assert took < 20


def test_a_rag_sized_request_of_mixed_lengths_keeps_each_texts_vector_in_place(stack: RunningStack) -> None:
    """300 texts from a few word pieces to past the 256 the model reads, shuffled: the local model runs
    the short ones several to a run, sorted by length. Each vector is its text's own (as asked alone, and
    in the reverse order), the word pieces are counted once each, floats and base64 agree."""
    paragraphs = [
        p for p in (Path(__file__).parents[2] / "README.md").read_text().split("\n\n") if len(p) > 40
    ]
    texts = [f"query {n}: reset my password" for n in range(150)] + paragraphs[:140]
    texts += ["The quick brown fox jumps over the lazy dog. " * 60] * 5 + ["naïve café 数据"] * 5
    texts = [texts[i] for i in np.random.default_rng(3).permutation(len(texts))]
    client = _client(stack)
    reply = client.embeddings.create(model=MODEL, input=texts)  # base64 on the wire
    got = np.asarray([d.embedding for d in reply.data], dtype=np.float32)
    assert [d.index for d in reply.data] == list(range(len(texts))) and got.shape == (300, 384)
    backwards = client.embeddings.create(model=MODEL, input=texts[::-1], encoding_format="float")
    assert backwards.usage.prompt_tokens == reply.usage.prompt_tokens
    assert np.abs(np.asarray([d.embedding for d in backwards.data])[::-1] - got).max() < 1e-5
    longest = texts.index("The quick brown fox jumps over the lazy dog. " * 60)
    for i in (longest, int(np.argmin([len(t) for t in texts])), 7, 150, 299):
        alone = client.embeddings.create(model=MODEL, input=texts[i])
        assert np.abs(np.asarray(alone.data[0].embedding) - got[i]).max() < 1e-5, i
        if i == longest:
            assert alone.usage.prompt_tokens == 256  # cut where sentence-transformers cuts


def test_errors_a_client_sees(stack: RunningStack) -> None:
    client = _client(stack)
    with pytest.raises(openai.BadRequestError) as auto:
        client.embeddings.create(model="auto", input="hello")
    assert auto.value.code == "model_lacks_capability"
    with pytest.raises(openai.BadRequestError) as shorter:
        client.embeddings.create(model=MODEL, input="hello", dimensions=100)  # MiniLM gives 384 only
    assert shorter.value.code == "invalid_value" and shorter.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert chat.value.code == "model_lacks_capability" and "/v1/embeddings" in chat.value.message
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="local/no-such-model", input="hello")
    bad = httpx.post(
        f"{stack.base_url}/v1/embeddings",
        headers={"Authorization": f"Bearer {stack.api_key}"},
        json={"model": MODEL, "input": []},
        timeout=30,
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input", bad.text


def test_the_ledger_records_the_task_by_digest(stack: RunningStack) -> None:
    secret = f"confidential corpus line {uuid.uuid4().hex}"
    raw = _client(stack).embeddings.with_raw_response.create(model=MODEL, input=[secret, "second line"])
    task_id = raw.headers["x-switchyard-task-id"]
    deadline = time.monotonic() + 30
    while True:
        rows = _ledger(stack, task_id)
        if set(rows) >= TRAIL or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(rows) == TRAIL, sorted(rows)
    submitted, completed = rows["task.submit"], rows["task.complete"]
    assert submitted["kind"] == "embedding" and submitted["inputs"] == 2
    assert completed["embedding"]["count"] == 2 and completed["embedding"]["dimensions"] == 384
    assert completed["embedding"]["kept"] == "inline"
    assert rows["task.classify"]["type"] == "embedding"
    assert rows["billing.usage"]["prompt_tokens"] > 0 and rows["billing.usage"]["cost_usd"] == 0
    everything = json.dumps(rows)
    assert secret not in everything
    # by digests under the organisation's key: the plain SHA-256 of the inputs or of the vectors (which a
    # guessed input run through the same public model gives) is nowhere
    raw_vectors = np.asarray([d.embedding for d in raw.parse().data], dtype="<f4").tobytes()
    plain_inputs = hashlib.sha256(orjson.dumps([secret, "second line"])).hexdigest()
    plain_vectors = hashlib.sha256(raw_vectors).hexdigest()
    assert plain_inputs not in everything and plain_vectors not in everything
    # the organisation's auditor (the dev key is an admin's) confirms both with the gateway
    auditor = {"Authorization": f"Bearer {stack.api_key}"}
    for body, held in (
        ({"input": [secret, "second line"]}, submitted["input_hmac_sha256"]),
        ({"vectors_sha256": plain_vectors}, completed["embedding"]["hmac_sha256"]),  # type: ignore[index]
    ):
        check = httpx.post(f"{stack.base_url}/v1/ledger/digest", json=body, headers=auditor, timeout=30)
        assert check.status_code == 200 and check.json()["digest"] == held, check.text


def _ledger(stack: RunningStack, task_id: str) -> dict[str, dict[str, object]]:
    con = sqlite3.connect(stack.var_dir / "switchyard.db")
    try:
        found = con.execute(
            "SELECT action, details FROM ledger_entries WHERE resource = ?", (f"task/{task_id}",)
        ).fetchall()
    finally:
        con.close()
    return {action: orjson.loads(details) for action, details in found}


def _embedding_task(tenant: str, task_id: str, texts: list[str]) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"ext-{task_id}",
        "source": "urn:example:indexer",
        "type": "switchyard.task.submitted.v1",
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "tenantid": tenant,
        "data": {
            "task_id": task_id,
            "tenant_id": tenant,
            "request": {"kind": "embedding", "model": MODEL, "input": texts},
            "submitted_at": datetime.now(UTC).isoformat(),
        },
    }


async def _submit_and_wait(nc: nats.NATS, tenant: str, texts: list[str]) -> dict[str, object]:
    """Submits an embedding task as another system would (plain nats-py); its result event."""
    task_id = uuid.uuid4().hex
    results: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_result(msg: nats.aio.msg.Msg) -> None:
        await results.put(msg.data)

    await nc.subscribe(f"switchyard.result.{tenant_token(tenant)}.{task_id}", cb=on_result)
    event = _embedding_task(tenant, task_id, texts)
    await nc.jetstream().publish(
        "switchyard.task.submitted", orjson.dumps(event), headers={"Nats-Msg-Id": str(event["id"])}
    )
    result: dict[str, object] = orjson.loads(await asyncio.wait_for(results.get(), 120))
    return result


async def test_another_system_submits_an_embedding_task_on_the_bus(
    stack: RunningStack, bus_tenant: str
) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        result = await _submit_and_wait(nc, bus_tenant, ["one", "two", "three"])
        assert result["type"] == "switchyard.task.completed.v1", result
        embedding = EmbeddingResult.model_validate(result["data"]["embedding"])  # type: ignore[index]
        assert embedding.object is None  # small: in the event
        rows = np.frombuffer(vectors.unpack(embedding), dtype="<f4").reshape(
            embedding.count, embedding.dimensions
        )
        assert rows.shape == (3, 384) and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-4)
        assert base64.b64decode(embedding.data or "") == rows.tobytes()
    finally:
        await nc.close()


async def test_another_system_reads_a_large_result_from_the_object_store(
    stack: RunningStack, bus_tenant: str
) -> None:
    """300 texts: 460,800 bytes of vectors, over the inline limit: the event names an object of the
    bucket `switchyard-embeddings`, which nats-py's own object store reads (no Switchyard code)."""
    nc = await nats.connect(stack.nats_url)
    try:
        texts = [f"catalogue entry {n}" for n in range(300)]
        result = await _submit_and_wait(nc, bus_tenant, texts)
        assert result["type"] == "switchyard.task.completed.v1", result
        embedding = result["data"]["embedding"]  # type: ignore[index]
        assert "data" not in embedding and embedding["object"], embedding  # unset fields are left out
        assert len(orjson.dumps(result)) < 4096, "the event names the object; the numbers are not in it"
        js = nc.jetstream()
        stored = await (await js.object_store("switchyard-embeddings")).get(embedding["object"])
        assert hashlib.sha256(stored.data or b"").hexdigest() == embedding["sha256"]
        rows = np.frombuffer(stored.data or b"", dtype="<f4").reshape(
            embedding["count"], embedding["dimensions"]
        )
        assert rows.shape == (300, 384) and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-4)
        # the pull reader gives the same bytes
        assert await vectors.fetch(js, EmbeddingResult.model_validate(embedding)) == stored.data
    finally:
        await nc.close()
