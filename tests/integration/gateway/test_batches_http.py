"""OpenAI's Batch API on two gateway processes, a real nats-server and SQLite, through the official OpenAI
SDK (`client.files.create`, `client.batches.create/retrieve/list/cancel`). The pipeline is the harness's
Answerer (a line whose prompt says FAIL fails as a provider error). Each line runs as a task: its result
is read back through the task API, and no line is submitted twice, even when the replica running the batch
is killed and the other takes it over."""

from __future__ import annotations

import asyncio
import time

import httpx
import nats
import openai
import pytest

from switchyard.common import objects, subjects, vectors
from tests.integration.gateway.batches_world import (
    EMBEDDER,
    Pipeline,
    World,
    auto_only_key,
    batch_record,
    chat_line,
    held,
    pipeline,
    read_jsonl,
    running_batch,
    sdk_client,
    until_status,
    upload_lines,
    world,
)
from tests.integration.gateway.harness import EMBED_DIMENSIONS, auth

pytestmark = pytest.mark.integration
__all__ = ["held", "pipeline", "world"]  # fixtures


async def test_batch_runs_each_line_as_a_task(world: World, pipeline: Pipeline) -> None:
    _, bases, acme, other = world
    client = sdk_client(bases[0], acme)
    file_id = await upload_lines(
        client,
        [
            chat_line("first", "capital of France?"),
            chat_line("broken", "FAIL now"),
            chat_line("third", "again?"),
        ],
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
    done = await until_status(client, created.id, "completed", "failed")
    assert done.status == "completed", done.errors
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (3, 2, 1)
    assert done.in_progress_at and done.finalizing_at and done.completed_at and not done.failed_at

    output = await read_jsonl(client, done.output_file_id)
    assert [line["custom_id"] for line in output] == ["first", "third"]  # input order
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200
        body = response["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "Paris"
        assert body["usage"]["completion_tokens"] == 2
    # the batch's usage, as OpenAI's batch object gives it: its answered lines' tokens (None before)
    usage = done.usage
    assert usage is not None, "the batch object carries its usage"
    answered = [line["response"]["body"]["usage"] for line in output]
    assert usage.input_tokens == sum(u["prompt_tokens"] for u in answered) > 0
    assert usage.output_tokens == sum(u["completion_tokens"] for u in answered) == 4
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    errors = await read_jsonl(client, done.error_file_id)
    assert [line["custom_id"] for line in errors] == ["broken"]
    failed = errors[0]["response"]
    assert failed["status_code"] == 502 and failed["body"]["error"]["code"] == "provider_error"
    # each line's request id as the gateway names a request (`req_`, its task's id after it; OpenAI's
    # `response.request_id` is the line's request's id), its error body's the same
    assert failed["request_id"] == failed["body"]["error"]["request_id"]
    for line in [*output, *errors]:
        assert line["response"]["request_id"].startswith("req_"), line
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
            f"/v1/tasks/{output[0]['response']['request_id'].removeprefix('req_')}",
            headers=auth(acme.keys["member"]),
        )
        assert task.status_code == 200 and task.json()["status"] == "completed"
        assert task.json()["result"]["content"] == "Paris"

    listed = await client.batches.list(limit=10)
    assert created.id in [b.id for b in listed.data]
    stranger = sdk_client(bases[1], other)
    with pytest.raises(openai.NotFoundError):
        await stranger.batches.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await stranger.batches.cancel(created.id)
    assert created.id not in [b.id for b in (await stranger.batches.list()).data]
    with pytest.raises(openai.NotFoundError):  # nor may another organisation run its file
        await stranger.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )


async def test_a_file_with_bad_lines_fails_the_batch(world: World, pipeline: Pipeline) -> None:
    _, bases, acme, _ = world
    client = sdk_client(bases[0], acme)
    file_id = await upload_lines(
        client,
        [
            chat_line("ok", "hello"),
            chat_line("unknown-model", "hello", model="nope/not-a-model"),
            chat_line("streamed", "hello", stream=True),
            chat_line("ok", "a duplicate id"),
        ],
    )
    batch = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    failed = await until_status(client, batch.id, "failed", "completed")
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
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="1h",  # type: ignore[arg-type]
        )
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


async def test_a_line_naming_a_model_its_key_may_not_use_fails_the_batch_at_validation(
    world: World, pipeline: Pipeline
) -> None:
    """A key limited to `auto` (its policy's `models`): a line naming another served model fails the batch
    at validation, that line listed with the 403's code, as a model the deployment does not serve fails it
    (OpenAI fails a batch at validation, `errors` by line); no line runs."""
    _, bases, acme, _ = world
    key = await auto_only_key(bases, acme)
    client = openai.AsyncOpenAI(base_url=f"{bases[0]}/v1", api_key=key, max_retries=0, timeout=30)
    file_id = await upload_lines(
        client,
        [chat_line("routed", "hello"), chat_line("named", "hello", model="local/smollm2-135m-instruct")],
    )
    batch = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    failed = await until_status(client, batch.id, "failed", "completed")
    assert failed.status == "failed" and failed.output_file_id is None
    assert failed.errors is not None
    [error] = failed.errors.data or []
    assert (error.code, error.param, error.line) == ("model_not_allowed", "body.model", 2)
    assert error.message == (
        "The model 'local/smollm2-135m-instruct' is not allowed for this API key; "
        "its allowed models are: auto"
    )
    assert pipeline.seen == []


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
    world: World, pipeline: Pipeline
) -> None:
    """Floats and base64, small vectors (in the result event) and large ones (in the object store, which
    expires them in minutes: kept by the batch until its output file holds them, then deleted)."""
    server, bases, acme, _ = world
    client = sdk_client(bases[0], acme, "admin")
    bodies = {
        "floats": {"model": EMBEDDER, "input": "the capital of France", "encoding_format": "float"},
        "base64": {"model": EMBEDDER, "input": ["one", "two"], "encoding_format": "base64"},
        "large": {"model": EMBEDDER, "input": [f"text {i}" for i in range(200)]},  # 300 KiB of vectors
        "chat model": {"model": "local/smollm2-135m-instruct", "input": "hi"},
    }
    rows = [{"custom_id": k, "method": "POST", "url": "/v1/embeddings", "body": b} for k, b in bodies.items()]
    failing = await client.batches.create(
        input_file_id=await upload_lines(client, rows), endpoint="/v1/embeddings", completion_window="24h"
    )
    failed = await until_status(client, failing.id, "failed", "completed")
    assert [(e.code, e.param, e.line) for e in failed.errors.data or []] == [
        ("model_lacks_capability", "body.model", 4)
    ]
    file_id = await upload_lines(client, rows[:3])
    batch = await client.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = await until_status(client, batch.id, "completed")
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    assert {t.embedding() is not None for t in pipeline.seen} == {True}
    output = {line["custom_id"]: line for line in await read_jsonl(client, done.output_file_id)}
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


async def test_batches_leave_the_organisations_interactive_share_free(world: World, held: Pipeline) -> None:
    """Two batches want 4 lines in flight; the organisation's batch slots are 2 of its 4 concurrent tasks:
    the other lines wait (they do not fail), and its interactive requests still get the other 2 slots."""
    _, bases, acme, _ = world
    client = sdk_client(bases[0], acme, "admin")
    ids = []
    for n in range(2):
        file_id = await upload_lines(
            client, [chat_line(f"r{i}", f"batch {n} question {i}") for i in range(2)]
        )
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
        done = await until_status(client, batch_id, "completed")
        assert (done.request_counts.completed, done.request_counts.failed) == (2, 0)
    assert len(held.seen) == 6  # 4 lines, each once, and the 2 interactive tasks


async def test_a_takeover_after_the_input_file_was_deleted_cancels_the_dead_runners_tasks(
    world: World, held: Pipeline
) -> None:
    """Last in this module: it kills a replica. Its runner dies with r0 and r1 in flight; the input file
    is deleted; the survivor takes the batch over, cannot read the file, and fails it as the runner itself
    would have (`file_not_found`), cancelling the tasks the dead runner left running, and submits nothing."""
    server, bases, acme, _ = world
    batch = await running_batch(sdk_client(bases[0], acme, "admin"), held, 4)
    record = await batch_record(server.url, batch.id)
    assert record.runner is not None
    dying = 0 if record.runner.owner.startswith("gateway-0") else 1
    bases.procs[dying].kill()
    bases.procs[dying].wait(5)
    survivor = sdk_client(bases[1 - dying], acme, "admin")
    await survivor.files.delete(batch.input_file_id)
    failed = await until_status(survivor, batch.id, "failed", within_s=20)
    assert [(e.code, e.param) for e in failed.errors.data or []] == [("file_not_found", "input_file_id")]
    assert len(held.seen) == 2
    async with httpx.AsyncClient(base_url=bases[1 - dying], headers=auth(acme.keys["admin"])) as http:
        states = [(await http.get(f"/v1/tasks/{task.task_id}")).json()["status"] for task in held.held]
    assert states == ["cancelled", "cancelled"]
