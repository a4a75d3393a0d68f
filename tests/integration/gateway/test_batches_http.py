"""OpenAI's Batch API on two gateway processes, a real nats-server and SQLite, through the official OpenAI
SDK (`client.files.create`, `client.batches.create/retrieve/list/cancel`). The pipeline is the harness's
Answerer (a line whose prompt says FAIL fails as a provider error). Each line runs as a task: its result
is read back through the task API, and no line is submitted twice, even when the replica running the batch
is killed and the other takes it over."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import openai
import pytest
from sqlalchemy import select

from switchyard.cli.processes import NatsServer
from switchyard.common import kv, objects, subjects, vectors
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import TaskFailed, TaskSubmitted
from switchyard.gateway.batches.models import BatchRecord
from switchyard.gateway.keys import parse_prefix
from switchyard.gateway.models import ApiKey
from tests.integration.gateway.harness import EMBED_DIMENSIONS, Answerer, Bases, Org, auth, gateways, make_org

pytestmark = pytest.mark.integration
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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, Bases, Org, Org]]:
    tmp = tmp_path_factory.mktemp("batches")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    try:
        with gateways(server, db_url, tmp, count=2, env=ENV) as bases:
            acme = asyncio.run(make_org(db_url, "acme", roles=("member", "admin")))
            other = asyncio.run(make_org(db_url, "other", roles=("member",)))
            bases.db_url = db_url  # type: ignore[attr-defined]
            yield server, bases, acme, other
    finally:
        server.stop()


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
async def pipeline(world: tuple[NatsServer, Bases, Org, Org]) -> AsyncIterator[Pipeline]:
    me = await Pipeline.start(world[0].url)
    yield me  # type: ignore[misc]
    await me.close()


@pytest.fixture
async def held(world: tuple[NatsServer, Bases, Org, Org]) -> AsyncIterator[Pipeline]:
    """The pipeline holding every task until `release` (or `answer`); at the end it answers what it still
    holds (cancelled tasks too, as an executor ends them), so their concurrency slots come back at once."""
    me = await Pipeline.start(world[0].url, hold=True)
    yield me  # type: ignore[misc]
    await me.release()
    await me.close()


def _sdk(base: str, org: Org, role: str = "member") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=org.keys[role], max_retries=0, timeout=30)


def _line(custom_id: str, prompt: str, **body: Any) -> dict[str, Any]:
    request = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": prompt}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": request}


async def _upload(client: openai.AsyncOpenAI, lines: list[dict[str, Any]]) -> str:
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return (await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")).id


async def _until(client: openai.AsyncOpenAI, batch_id: str, *statuses: str, within_s: float = 20.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        batch = await client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        await asyncio.sleep(0.1)


async def _jsonl(client: openai.AsyncOpenAI, file_id: str) -> list[dict[str, Any]]:
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines()]


async def _running(client: openai.AsyncOpenAI, pipeline: Pipeline, count: int) -> Any:
    """A batch of `count` questions, once its first two lines (the concurrency) are held in flight."""
    file_id = await _upload(client, [_line(f"r{i}", f"question {i}") for i in range(count)])
    return await _started(client, pipeline, file_id)


async def _started(client: openai.AsyncOpenAI, pipeline: Pipeline, file_id: str) -> Any:
    """A batch of the file, once its first two lines (the concurrency) are held in flight."""
    batch = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 30
    while len(pipeline.held) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return batch


async def test_batch_runs_each_line_as_a_task(
    world: tuple[NatsServer, Bases, Org, Org], pipeline: Pipeline
) -> None:
    _, bases, acme, other = world
    client = _sdk(bases[0], acme)
    file_id = await _upload(
        client, [_line("first", "capital of France?"), _line("broken", "FAIL now"), _line("third", "again?")]
    )
    created = await client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "nightly"},
        output_expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert created.id.startswith("batch_") and created.status == "validating"
    assert created.expires_at == created.created_at + 24 * 3600 and created.metadata == {"run": "nightly"}
    done = await _until(client, created.id, "completed", "failed")
    assert done.status == "completed", done.errors
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (3, 2, 1)
    assert done.in_progress_at and done.finalizing_at and done.completed_at and not done.failed_at

    output = await _jsonl(client, done.output_file_id)
    assert [line["custom_id"] for line in output] == ["first", "third"]  # input order
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200
        body = response["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "Paris"
        assert body["usage"]["completion_tokens"] == 2
    errors = await _jsonl(client, done.error_file_id)
    assert [line["custom_id"] for line in errors] == ["broken"]
    failed = errors[0]["response"]
    assert failed["status_code"] == 502 and failed["body"]["error"]["code"] == "provider_error"
    assert errors[0]["error"] is None
    file = await client.files.retrieve(done.output_file_id)
    assert file.purpose == "batch_output"
    # output_expires_after: both files expire two hours after they were made
    for made in (file, await client.files.retrieve(done.error_file_id)):
        assert made.expires_at == made.created_at + 7200
    with pytest.raises(openai.BadRequestError, match="output_expires_after"):
        await client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            output_expires_after={"anchor": "created_at", "seconds": 60},  # under OpenAI's hour
        )

    # Every line was one low-priority task, submitted once; its result is the task API's.
    assert len(pipeline.seen) == 3 and len({t.task_id for t in pipeline.seen}) == 3
    assert {t.priority for t in pipeline.seen} == {"low"}
    async with httpx.AsyncClient(base_url=bases[1]) as http:
        task = await http.get(
            f"/v1/tasks/{output[0]['response']['request_id']}", headers=auth(acme.keys["member"])
        )
        assert task.status_code == 200 and task.json()["status"] == "completed"
        assert task.json()["result"]["content"] == "Paris"

    listed = await client.batches.list(limit=10)
    assert created.id in [b.id for b in listed.data]
    stranger = _sdk(bases[1], other)
    with pytest.raises(openai.NotFoundError):
        await stranger.batches.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await stranger.batches.cancel(created.id)
    assert created.id not in [b.id for b in (await stranger.batches.list()).data]
    with pytest.raises(openai.NotFoundError):  # nor may another organisation run its file
        await stranger.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )


async def test_a_file_with_bad_lines_fails_the_batch(
    world: tuple[NatsServer, Bases, Org, Org], pipeline: Pipeline
) -> None:
    _, bases, acme, _ = world
    client = _sdk(bases[0], acme)
    file_id = await _upload(
        client,
        [
            _line("ok", "hello"),
            _line("unknown-model", "hello", model="nope/not-a-model"),
            _line("streamed", "hello", stream=True),
            _line("ok", "a duplicate id"),
        ],
    )
    batch = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    failed = await _until(client, batch.id, "failed", "completed")
    assert failed.status == "failed" and failed.failed_at and failed.output_file_id is None
    assert failed.errors is not None and failed.errors.object == "list"
    found = [(e.code, e.param, e.line) for e in failed.errors.data or []]
    assert found == [
        ("model_not_found", "body.model", 2),
        ("invalid_value", "body.stream", 3),
        ("duplicate_custom_id", "custom_id", 4),
    ]
    assert pipeline.seen == []  # nothing of a failed batch runs

    with pytest.raises(openai.BadRequestError) as refused:
        await client.batches.create(input_file_id=file_id, endpoint="/v1/responses", completion_window="24h")
    assert "/v1/chat/completions, /v1/completions, /v1/embeddings" in refused.value.message
    with pytest.raises(openai.BadRequestError):
        await client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="1h"
        )  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        await client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={f"k{i}": "v" for i in range(17)},
        )
    with pytest.raises(openai.NotFoundError):
        await client.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )


async def _gone(url: str, bucket: str, name: str) -> bool:
    nc = await nats.connect(url)
    try:
        await objects.describe(nc.jetstream(), bucket, name)
        return False
    except objects.ObjectGone:
        return True
    finally:
        await nc.close()


async def test_an_embeddings_batch_answers_each_line_as_post_v1_embeddings_does(
    world: tuple[NatsServer, Bases, Org, Org], pipeline: Pipeline
) -> None:
    """Floats and base64, small vectors (in the result event) and large ones (in the object store, which
    expires them in minutes: kept by the batch until its output file holds them, then deleted)."""
    server, bases, acme, _ = world
    client = _sdk(bases[0], acme, "admin")
    bodies = {
        "floats": {"model": EMBEDDER, "input": "the capital of France", "encoding_format": "float"},
        "base64": {"model": EMBEDDER, "input": ["one", "two"], "encoding_format": "base64"},
        "large": {"model": EMBEDDER, "input": [f"text {i}" for i in range(200)]},  # 300 KiB of vectors
        "chat model": {"model": "local/smollm2-135m-instruct", "input": "hi"},
    }
    rows = [{"custom_id": k, "method": "POST", "url": "/v1/embeddings", "body": b} for k, b in bodies.items()]
    failing = await client.batches.create(
        input_file_id=await _upload(client, rows), endpoint="/v1/embeddings", completion_window="24h"
    )
    failed = await _until(client, failing.id, "failed", "completed")
    assert [(e.code, e.param, e.line) for e in failed.errors.data or []] == [
        ("model_lacks_capability", "body.model", 4)
    ]
    file_id = await _upload(client, rows[:3])
    batch = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = await _until(client, batch.id, "completed")
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    assert {t.embedding() is not None for t in pipeline.seen} == {True}
    output = {line["custom_id"]: line for line in await _jsonl(client, done.output_file_id)}
    async with httpx.AsyncClient(base_url=bases[1], headers=auth(acme.keys["admin"])) as http:
        for custom_id, body in list(bodies.items())[:3]:
            direct = await http.post("/v1/embeddings", json=body)
            assert direct.status_code == 200
            assert output[custom_id]["response"]["body"] == direct.json()  # every number, as the endpoint
    assert isinstance(output["floats"]["response"]["body"]["data"][0]["embedding"], list)
    assert isinstance(output["base64"]["response"]["body"]["data"][1]["embedding"], str)
    sdk = await client.embeddings.create(model=EMBEDDER, input=["one", "two"])  # base64, decoded by the SDK
    assert len(sdk.data[1].embedding) == EMBED_DIMENSIONS
    [large] = [t for t in pipeline.seen if t.priority == "low" and len(t.embedding().input) == 200]  # type: ignore[union-attr]
    name = vectors.object_name(large.tenant_id, large.task_id)
    assert await _gone(server.url, subjects.OBJ_EMBEDDINGS, name)  # read, and deleted
    assert await _gone(server.url, subjects.OBJ_BATCH_VECTORS, name)  # kept until the output held them


async def test_batches_leave_the_organisations_interactive_share_free(
    world: tuple[NatsServer, Bases, Org, Org], held: Pipeline
) -> None:
    """Two batches want 4 lines in flight; the organisation's batch slots are 2 of its 4 concurrent tasks:
    the other lines wait (they do not fail), and its interactive requests still get the other 2 slots."""
    _, bases, acme, _ = world
    client = _sdk(bases[0], acme, "admin")
    ids = []
    for n in range(2):
        file_id = await _upload(client, [_line(f"r{i}", f"batch {n} question {i}") for i in range(2)])
        batch = await client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        ids.append(batch.id)
    deadline = time.monotonic() + 10
    while len(held.held) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # the waiting lines are tried again meanwhile
    assert len(held.seen) == 2
    interactive = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": "now"}]}
    async with httpx.AsyncClient(base_url=bases[1], headers=auth(acme.keys["admin"])) as http:
        for _ in range(2):
            assert (await http.post("/v1/tasks", json=interactive)).status_code == 202
        full = await http.post("/v1/tasks", json=interactive)  # 2 lines and 2 interactive: the whole limit
        assert full.status_code == 429 and full.json()["error"]["code"] == "concurrency_limit_exceeded"
    await held.release()
    for batch_id in ids:
        done = await _until(client, batch_id, "completed")
        assert (done.request_counts.completed, done.request_counts.failed) == (2, 0)
    assert len(held.seen) == 6  # 4 lines, each once, and the 2 interactive tasks


async def _ended(client: openai.AsyncOpenAI, batch_id: str, status: str, count: int, code: str) -> Any:
    """The batch once `status`, what finished in its output, every other line of `count` in its error
    file with `response: null` and `error.code` `code`."""
    ended = await _until(client, batch_id, status)
    assert ended.request_counts.completed >= 1
    output = await _jsonl(client, ended.output_file_id)
    errors = await _jsonl(client, ended.error_file_id)
    assert sorted(line["custom_id"] for line in output + errors) == [f"r{i}" for i in range(count)]
    assert errors and all(e["response"] is None and e["error"]["code"] == code for e in errors)
    return ended


async def test_cancel_stops_a_running_batch(
    world: tuple[NatsServer, Bases, Org, Org], held: Pipeline
) -> None:
    _, bases, acme, _ = world
    client = _sdk(bases[0], acme)
    batch = await _running(client, held, 5)
    await held.answer(held.held.pop(0))  # one answered before the cancel
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    cancelled = await _ended(client, batch.id, "cancelled", 5, "batch_cancelled")
    assert cancelled.cancelled_at
    assert 2 <= len(held.seen) <= 3  # at most one more, as r0 was answered; none once cancelling
    async with httpx.AsyncClient(base_url=bases[0]) as http:  # the held task was cancelled as a task
        state = (
            await http.get(f"/v1/tasks/{held.held[0].task_id}", headers=auth(acme.keys["member"]))
        ).json()
    assert state["status"] == "cancelled"


def _expire(current: bytes | None) -> tuple[bytes, None]:
    record = BatchRecord.model_validate_json(current or b"{}")
    past = record.batch.model_copy(update={"expires_at": int(time.time()) - 1})
    return record.model_copy(update={"batch": past}).model_dump_json().encode(), None


async def test_a_batch_past_its_window_expires_with_what_it_finished(
    world: tuple[NatsServer, Bases, Org, Org], held: Pipeline
) -> None:
    server, bases, acme, _ = world
    client = _sdk(bases[0], acme)
    batch = await _running(client, held, 4)
    await held.answer(held.held.pop(0))
    nc = await nats.connect(server.url)  # 24 hours later, as far as the runner can tell
    try:
        bucket = await nc.jetstream().key_value(subjects.KV_BATCHES)
        await kv.update(bucket, f"b.{batch.id}", _expire)
    finally:
        await nc.close()
    expired = await _ended(client, batch.id, "expired", 4, "batch_expired")
    assert expired.expired_at


def _rss_mib(pid: int) -> float:
    status = dict(row.split(":", 1) for row in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) / 1024


async def test_a_running_batch_holds_the_requests_in_flight_not_its_file(
    world: tuple[NatsServer, Bases, Org, Org], held: Pipeline
) -> None:
    """A running batch reads its input file as its lines are submitted: while its 2 lines in flight are held,
    the runner holds those and a chunk of the file, not the file's 600 requests of 48 KB (28 MiB, which it
    used to keep until the batch ended)."""
    server, bases, acme, _ = world
    client = _sdk(bases[0], acme, "admin")
    rows = [_line(f"r{i}", f"question {i} " + "x" * 48_000) for i in range(600)]
    file_id = await _upload(client, rows)
    before = [_rss_mib(proc.pid) for proc in bases.procs]
    batch = await _started(client, held, file_id)
    await asyncio.sleep(0.5)  # the next line read, waiting for a slot
    record = await _record(server.url, batch.id)
    assert record.runner is not None and record.batch.request_counts.total == 600
    runner = 0 if record.runner.owner.startswith("gateway-0") else 1
    grown = _rss_mib(bases.procs[runner].pid) - before[runner]
    assert grown < 10, f"the runner grew {grown:.1f} MiB for a 28 MiB file"
    assert len(held.seen) == 2
    await client.batches.cancel(batch.id)
    cancelled = await _until(client, batch.id, "cancelled", within_s=60)
    assert (cancelled.request_counts.total, cancelled.request_counts.completed) == (600, 0)


async def test_a_batch_whose_input_file_is_deleted_fails_saying_so(
    world: tuple[NatsServer, Bases, Org, Org], held: Pipeline
) -> None:
    """The runner reads the input file as it needs it: one deleted while its batch runs fails the batch
    (`file_not_found` in its `errors`, naming it), its tasks still running are cancelled and no other line
    is submitted; no output or error file is written (their custom_ids are in the file)."""
    _, bases, acme, _ = world
    client = _sdk(bases[0], acme, "admin")
    batch = await _running(client, held, 4)
    await client.files.delete(batch.input_file_id)
    failed = await _until(client, batch.id, "failed")
    assert failed.failed_at and failed.output_file_id is None and failed.error_file_id is None
    assert failed.errors is not None and len(failed.errors.data) == 1
    error = failed.errors.data[0]
    assert (error.code, error.param) == ("file_not_found", "input_file_id")
    assert f"the input file {batch.input_file_id} was deleted" in (error.message or "")
    assert len(held.seen) == 2  # r2 and r3 never submitted
    async with httpx.AsyncClient(base_url=bases[0], headers=auth(acme.keys["admin"])) as http:
        states = [(await http.get(f"/v1/tasks/{task.task_id}")).json()["status"] for task in held.held]
    assert states == ["cancelled", "cancelled"]


async def _revoke(db_url: str, key: str) -> None:
    engine = create_engine(db_url)
    try:
        async with sessionmaker(engine).begin() as s:
            row = (await s.execute(select(ApiKey).where(ApiKey.prefix == parse_prefix(key)))).scalar_one()
            row.revoked_at = datetime.now(UTC)
    finally:
        await engine.dispose()


async def test_a_key_revoked_while_its_batch_runs_fails_the_lines_not_yet_submitted(
    world: tuple[NatsServer, Bases, Org, Org], held: Pipeline
) -> None:
    _, bases, acme, _ = world
    batch = await _running(_sdk(bases[0], acme), held, 4)
    await _revoke(bases.db_url, acme.keys["member"])  # type: ignore[attr-defined]
    await asyncio.sleep(1.0)  # longer than the principal is trusted for (SWITCHYARD_AUTH_CACHE_TTL_S)
    await held.release()
    admin = _sdk(bases[0], acme, "admin")
    done = await _until(admin, batch.id, "completed")
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)
    errors = await _jsonl(admin, done.error_file_id)
    assert [e["custom_id"] for e in errors] == ["r2", "r3"]
    assert {e["response"]["status_code"] for e in errors} == {401}
    assert {e["response"]["body"]["error"]["code"] for e in errors} == {"invalid_api_key"}
    assert len(held.seen) == 2  # the tasks already submitted ran; no other was


async def _record(url: str, batch_id: str) -> BatchRecord:
    nc = await nats.connect(url)
    try:
        bucket = await nc.jetstream().key_value(subjects.KV_BATCHES)
        entry = await bucket.get(f"b.{batch_id}")
        return BatchRecord.model_validate_json(entry.value or b"{}")
    finally:
        await nc.close()


async def test_another_replica_takes_over_a_batch_whose_runner_died(
    world: tuple[NatsServer, Bases, Org, Org], held: Pipeline
) -> None:
    """Last in this module: it kills a replica (and runs as the admin: the member's key was revoked). The
    replica dies once its progress says r0 is done: the survivor reads the input file again from r1 on,
    follows the tasks of r1 and r2 and submits r3."""
    server, bases, acme, _ = world
    batch = await _running(_sdk(bases[0], acme, "admin"), held, 4)
    await held.answer(held.held.pop(0))  # r0 done: r2 is submitted in its slot
    deadline = time.monotonic() + 10
    while (record := await _record(server.url, batch.id)).done_below < 1 or len(held.held) < 2:
        assert time.monotonic() < deadline, "r0's result never written with the lease"
        await asyncio.sleep(0.1)
    assert record.runner is not None
    dying = 0 if record.runner.owner.startswith("gateway-0") else 1
    bases.procs[dying].kill()
    bases.procs[dying].wait(5)
    survivor = _sdk(bases[1 - dying], acme, "admin")
    await held.release()  # the dead runner's tasks end; the survivor finds their results
    done = await _until(survivor, batch.id, "completed", within_s=20)
    assert done.request_counts.completed == 4
    output = await _jsonl(survivor, done.output_file_id)
    assert [line["custom_id"] for line in output] == [f"r{i}" for i in range(4)]
    assert len(held.seen) == 4 and len({t.task_id for t in held.seen}) == 4  # none twice
    taken = await _record(server.url, batch.id)
    assert taken.runner is None and taken.batch.status == "completed"
