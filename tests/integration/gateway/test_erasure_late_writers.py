"""Work of an organisation that began before its erasure and ends after it (a batch its runner finishes: its
output and error files, a refused line's error, an embedding line's vectors; an upload; a request whose
answer is stored, cached or added to a conversation; a task API task's state) must not write the
organisation's data back: each store removes what it writes for an organisation the tenant registry marks
erased (access/fence.py), so a second erasure finds nothing. Another organisation's writes stay. Real
nats-server and SQLite, the stores as the gateway builds them, the erasure as the admin API runs it.

Before, every late write stayed (the README told the operator to run the erasure once more after the
organisation's batches stopped): a second erasure counted the file, the stored response, the conversation,
the cache keys, the batch vectors and the task."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
import numpy as np
import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, kv, objects, subjects, tenants, vectors
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.embedding.embedder import Embedder
from switchyard.common.embedding.model_files import ensure_built
from switchyard.common.events import Usage
from switchyard.gateway.access.erasure import erase_organization
from switchyard.gateway.access.fence import ErasedFence
from switchyard.gateway.access.models import Erased
from switchyard.gateway.batches.models import Batch, BatchRecord, LineError
from switchyard.gateway.batches.store import BatchStore, batches_bucket, new_batch_id
from switchyard.gateway.batches.vectors import KeptVectors, open_bucket
from switchyard.gateway.cache.backends import EdgeIndex
from switchyard.gateway.cache.exact import ExactStore, cache_bucket
from switchyard.gateway.cache.models import CachedAnswer, Directive
from switchyard.gateway.cache.service import Configs, ResponseCache
from switchyard.gateway.conversations.store import ConversationStore, StoredConversation, new_id
from switchyard.gateway.db import migrations
from switchyard.gateway.errors import Conflict
from switchyard.gateway.files.store import FileStore, files_bucket, tenant_part
from switchyard.gateway.stored_responses.store import ResponseStore, StoredResponse, responses_bucket
from switchyard.gateway.taskapi.idempotency import claim_key
from switchyard.gateway.taskapi.models import Claim, TaskResult, TaskState, TaskUsage
from switchyard.gateway.taskapi.store import TaskStore, tasks_bucket
from tests.integration.gateway.harness import make_org
from tests.integration.gateway.test_cache_service import DEFAULT, QUESTION, completed, task

pytestmark = pytest.mark.integration
SECRET = "the customer's private words"
MB = 1024 * 1024


@dataclass
class Stores:
    js: JetStreamContext
    registry: KeyValue
    files: FileStore
    responses: ResponseStore
    conversations: ConversationStore
    cache: ExactStore
    kept: KeptVectors
    batches: BatchStore
    tasks: TaskStore


@pytest.fixture
async def stores(nats_server: NatsServer) -> AsyncIterator[Stores]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    await vectors.open_store(js, ttl_s=600, max_bytes=64 * MB, replicas=1)
    responses = await responses_bucket(
        js, keep_s=3600, max_bytes=64 * MB, replicas=1, max_value_bytes=MB, org_bytes=16 * MB
    )
    kept = await open_bucket(js, max_bytes=64 * MB, replicas=1)
    made = Stores(
        js=js,
        registry=await tenants.registry_bucket(js),
        files=await files_bucket(js, max_bytes=64 * MB),
        responses=responses,
        conversations=ConversationStore(responses),
        cache=ExactStore(await cache_bucket(js, max_ttl_s=3600)),
        kept=kept,
        batches=BatchStore(await batches_bucket(js), kept),
        tasks=TaskStore(await tasks_bucket(js), js),
    )
    fence = ErasedFence(made.registry)  # as the gateway wires it (app.py)
    made.files.fence = made.responses.fence = made.cache.fence = made.kept.fence = fence
    made.batches.fence = made.tasks.fence = fence
    yield made
    await nc.close()


def _answer(tenant_id: str, key: str) -> CachedAnswer:
    now = time.time()
    return CachedAnswer(
        tenant_id=tenant_id,
        key=key,
        source_task_id="t1",
        model="m",
        provider="p",
        tier="local",
        content=SECRET,
        finish_reason="stop",
        usage=Usage(prompt_tokens=1, completion_tokens=1),
        created_at=now,
        expires_at=now + 600,
    )


async def _running_batch(s: Stores, tenant_id: str) -> str:
    now = int(time.time())
    batch = Batch(
        id=new_batch_id(),
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        status="in_progress",
        created_at=now,
        expires_at=now + 86400,
    )
    assert await s.batches.create(BatchRecord(batch=batch, tenant_id=tenant_id, user_id=None, api_key_id="k"))
    return batch.id


async def _late_writes(s: Stores, tenant_id: str, batch_id: str) -> list[str]:
    """What work begun before the erasure writes as it ends; the writes refused (their names)."""
    refused = []
    line = json.dumps({"custom_id": "q", "response": {"body": SECRET}}).encode() + b"\n"
    try:  # a batch's output file (an upload's put is the same)
        await s.files.put(tenant_id=tenant_id, purpose="batch_output", filename="out.jsonl", data=line)
    except Conflict as exc:
        assert exc.code == "organization_erased"
        refused.append("file")
    record = StoredResponse(
        response={"id": f"resp_{tenant_id}", "object": "response", "status": "completed", "output": []},
        input=[{"id": "msg_1", "type": "message", "role": "user", "content": SECRET}],
    )
    if not await s.responses.put(tenant_id, record):
        refused.append("response")
    conversation = StoredConversation(id=new_id(), items=({"type": "message", "content": SECRET},))
    try:
        await s.conversations.create(tenant_id, conversation)
    except Conflict as exc:
        assert exc.code == "organization_erased"
        refused.append("conversation")
    await s.cache.put(_answer(tenant_id, "ab" * 32))
    await s.cache.count_hit(tenant_id, "ab" * 32)
    try:  # a batch created by a request that came before the erasure
        await _running_batch(s, tenant_id)
    except Conflict as exc:
        assert exc.code == "organization_erased"
        refused.append("batch")
    # the runner refuses a line (its key revoked) and keeps an embedding line's vectors
    await s.batches.keep_line_error(batch_id, 0, LineError(status=401, type="t", code="c", message="m"))
    rows = np.ones((200, 384), dtype="<f4")
    name = vectors.object_name(tenant_id, f"task-{batch_id}")
    stored = await vectors.keep(s.js, rows.tobytes(), count=200, dimensions=384, name=name)
    await s.kept.keep(stored, tenant_id=tenant_id)
    # a task API task that ran across the erasure: its claim, then its state with its answer
    now = datetime.now(UTC)
    task_id = ids.new_id()
    claim = Claim(task_id=task_id, request_sha256="0" * 64, claimed_at=now)
    assert await s.tasks.take(claim_key(tenant_id, "k1"), claim) is not None
    state = TaskState(
        id=task_id,
        tenant_id=tenant_id,
        status="completed",
        model="m",
        created_at=now,
        updated_at=now,
        idempotency_key="k1",
        result=TaskResult(
            model="m",
            tier="local",
            content=SECRET,
            finish_reason="stop",
            usage=TaskUsage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
        ),
    )
    await s.tasks.put(state)
    return refused


async def _erase(s: Stores, sessions_url: str, tenant_id: str) -> Erased:
    engine = create_engine(sessions_url)

    async def closed() -> None:
        await tenants.erase(s.registry, tenant_id)

    try:
        return await erase_organization(
            sessionmaker(engine),
            tenant_id=tenant_id,
            responses=s.responses,
            files=s.files,
            batches=s.batches,
            cache=s.cache,
            index=None,
            closed=closed,
            js=s.js,
        )
    finally:
        await engine.dispose()


async def test_work_that_ends_after_the_erasure_leaves_nothing_of_the_organisation(
    stores: Stores, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"
    await migrations().upgrade(db_url)
    acme, globex = await make_org(db_url, "acme"), await make_org(db_url, "globex")
    acme_batch, globex_batch = await _running_batch(stores, acme.id), await _running_batch(stores, globex.id)

    first = await _erase(stores, db_url, acme.id)
    refused = await _late_writes(stores, acme.id, acme_batch)
    kept = await _late_writes(stores, globex.id, globex_batch)
    again = await _erase(stores, db_url, acme.id)

    assert (first.batches, first.unfinished_batches) == (1, 1)
    assert refused == ["file", "response", "conversation", "batch"] and kept == []
    found = again.model_dump(exclude={"organization_id", "semantic_cache"})
    assert {k: v for k, v in found.items() if v not in (0, False)} == {}
    # nothing of acme in any store, directly; globex's late writes all stayed
    index, cache = await stores.js.key_value(subjects.KV_FILES), await stores.js.key_value(subjects.KV_CACHE)
    for org, left in ((acme, 0), (globex, 1)):
        keys = await kv.keys(index, f"{tenant_part(org.id)}.")
        described = [k for k in keys if (await kv.read(index, k))[0]]
        assert len(described) == left  # a deleted file's key stays as its marker (as a delete leaves it)
        stored = await objects.listed(stores.js, subjects.OBJ_FILES)
        assert sum((o.name or "").startswith(tenant_part(org.id)) for o in stored) == left
        cached = await kv.keys(cache, f"a.{kv.safe_key(org.id)}.")
        hits = await kv.keys(cache, f"h.{kv.safe_key(org.id)}.")
        assert (len(cached), len(hits)) == (left, left)
        assert await vectors.forget_tenant(stores.js, org.id) == left
    assert len(await kv.keys(stores.responses.bucket)) == 2 + 1  # globex's response, conversation, usage
    assert await stores.batches.line_error(acme_batch, 0) is None
    assert await stores.batches.line_error(globex_batch, 0) is not None
    states = await stores.js.key_value(subjects.KV_TASKS)
    left = {org.id: 0 for org in (acme, globex)}
    for key in await kv.keys(states):
        value = (await kv.read(states, key))[0] or b""
        for org in (acme, globex):
            left[org.id] += org.id.encode() in value
    assert left == {acme.id: 0, globex.id: 1}
    assert (await kv.read(states, claim_key(acme.id, "k1")))[0] is None
    assert (await kv.read(states, claim_key(globex.id, "k1")))[0] is not None


async def test_an_answer_cached_as_its_organisation_is_erased_leaves_no_vector(
    stores: Stores, tmp_path: Path
) -> None:
    """A request's answer cached after this replica forgot the erased organisation's semantic-cache vectors
    (cache/erasures.py ran on the registry's change): the vector it adds goes again, with its exact entry."""
    files = ensure_built()[0]
    embedder = Embedder(files.int8, files.tokenizer)
    index = EdgeIndex(tmp_path / "edge")
    events = bus.EventPublisher(stores.js, source="test")
    cache = ResponseCache(
        store=stores.cache, configs=Configs(DEFAULT), events=events, index=index, embedder=embedder
    )
    await tenants.erase(stores.registry, "acme")
    index.forget_tenant("acme")  # as every replica does on the registry's change
    try:
        kept = {}
        for tenant in ("acme", "globex"):
            asked = task(tenant, QUESTION)
            found = await cache.lookup(tenant_id=tenant, plan="pro", task=asked, directive=Directive())
            assert found is not None and found.text is not None
            kept[tenant] = await cache.keep(found, completed(asked))
            vector = embedder.embed([found.text]).vectors[0]
            near = index.search(vector, tenant_id=tenant, scope=found.scope, threshold=0.5, now=time.time())
            assert (near is not None) == (tenant == "globex"), tenant
        assert kept == {"acme": False, "globex": True}
        answers = await stores.js.key_value(subjects.KV_CACHE)
        assert await kv.keys(answers, f"a.{kv.safe_key('acme')}.") == []
    finally:
        await cache.close()
        index.close()
