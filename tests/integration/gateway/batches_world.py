"""The Batch API tests' world: two gateway processes on a real nats-server and SQLite (batch settings made
quick), the scripted pipeline (the harness's Answerer; a line whose prompt says FAIL fails as a provider
error), and what the tests do through the OpenAI SDK (upload lines, create, wait for a status, read a
file)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import nats
import openai
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import TaskFailed, TaskSubmitted
from switchyard.gateway.batches.models import BatchRecord
from switchyard.gateway.tenants import create_api_key
from tests.integration.gateway.harness import Answerer, Bases, Org, gateway_stack, make_org

EMBEDDER = "local/all-minilm-l6-v2"
LEASE_S = 2.0
ENV = {
    "SWITCHYARD_BATCH_CONCURRENCY": "2",
    "SWITCHYARD_BATCH_LEASE_S": str(LEASE_S),
    "SWITCHYARD_BATCH_SCAN_S": "0.3",
    "SWITCHYARD_BATCH_POLL_S": "0.1",
    "SWITCHYARD_REPLICA_TTL_S": "2",
    "SWITCHYARD_AUTH_CACHE_TTL_S": "0.5",  # how soon a running batch hears its key was revoked
    "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": "4",  # batch lines hold at most 2 (the interactive share: half)
    "SWITCHYARD_CONCURRENCY_SLOT_TTL_S": "3",  # a killed replica's slots (its lines') come back this soon
}

World = tuple[NatsServer, Bases, Org, Org]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("batches")
    with gateway_stack(tmp, count=2, env=ENV) as (server, db_url, bases):
        acme = asyncio.run(make_org(db_url, "acme", roles=("member", "admin")))
        other = asyncio.run(make_org(db_url, "other", roles=("member",)))
        bases.db_url = db_url  # type: ignore[attr-defined]
        yield server, bases, acme, other


class Pipeline(Answerer):
    """The Answerer, failing a task whose prompt says FAIL as the executor fails a provider error."""

    async def answer(self, task: TaskSubmitted) -> None:
        if task.embedding() is None and "FAIL" in str(task.chat().messages[-1].content):
            failed = TaskFailed(
                task_id=task.task_id,
                tenant_id=task.tenant_id,
                user_id=task.user_id,
                error_code="provider_error",
                error_message="the upstream answered 500",
                failed_at=datetime.now(UTC),
            )
            await self._result(failed)
            return
        await super().answer(task)


@pytest.fixture
async def pipeline(world: World) -> AsyncIterator[Pipeline]:
    me = await Pipeline.start(world[0].url)
    yield me  # type: ignore[misc]
    await me.close()


@pytest.fixture
async def held(world: World) -> AsyncIterator[Pipeline]:
    """The pipeline holding every task until `release` (or `answer`); at the end it answers what it still
    holds (cancelled tasks too, as an executor ends them), so their concurrency slots come back at once."""
    me = await Pipeline.start(world[0].url, hold=True)
    yield me  # type: ignore[misc]
    await me.release()
    await me.close()


def sdk_client(base: str, org: Org, role: str = "member") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=org.keys[role], max_retries=0, timeout=30)


def chat_line(custom_id: str, prompt: str, **body: Any) -> dict[str, Any]:
    request = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": prompt}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": request}


async def upload_lines(client: openai.AsyncOpenAI, lines: list[dict[str, Any]]) -> str:
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return (await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")).id


async def until_status(
    client: openai.AsyncOpenAI, batch_id: str, *statuses: str, within_s: float = 20.0
) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        batch = await client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        await asyncio.sleep(0.1)


async def read_jsonl(client: openai.AsyncOpenAI, file_id: str) -> list[dict[str, Any]]:
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines()]


async def running_batch(client: openai.AsyncOpenAI, pipeline: Pipeline, count: int) -> Any:
    """A batch of `count` questions, once its first two lines (the concurrency) are held in flight."""
    file_id = await upload_lines(client, [chat_line(f"r{i}", f"question {i}") for i in range(count)])
    return await started_batch(client, pipeline, file_id)


async def started_batch(client: openai.AsyncOpenAI, pipeline: Pipeline, file_id: str) -> Any:
    """A batch of the file, once its first two lines (the concurrency) are held in flight."""
    batch = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 30
    while len(pipeline.held) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return batch


async def batch_record(url: str, batch_id: str) -> BatchRecord:
    """The batch's record as the bus holds it (its runner's lease, its progress)."""
    nc = await nats.connect(url)
    try:
        bucket = await nc.jetstream().key_value(subjects.KV_BATCHES)
        entry = await bucket.get(f"b.{batch_id}")
        return BatchRecord.model_validate_json(entry.value or b"{}")
    finally:
        await nc.close()


async def auto_only_key(bases: Bases, org: Org) -> str:
    """A new key of `org`'s member limited to the model `auto` (its policy's `models`)."""
    engine = create_engine(bases.db_url)  # type: ignore[attr-defined]
    try:
        key, _ = await create_api_key(
            sessionmaker(engine),
            tenant_id=org.id,
            name="auto only",
            user_id=org.users["member"],
            policy={"models": ["auto"]},
        )
        return key
    finally:
        await engine.dispose()
