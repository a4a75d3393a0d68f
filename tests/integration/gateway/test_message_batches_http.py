"""Anthropic's Message Batches API through the Anthropic SDK, on the Batch API's test world (batches_world:
two gateway processes, a real nats-server and SQLite): a batch's life to its results, a bad request as its
own `errored` result, cancel, paging, delete, and what another organisation and the OpenAI APIs see."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import nats
import orjson
import pytest

from switchyard.common import subjects
from switchyard.gateway.files.models import FileObject
from switchyard.gateway.files.store import file_key
from tests.integration.gateway.batches_world import (
    Pipeline,
    World,
    auto_only_key,
    batch_record,
    held,
    pipeline,
    world,
)
from tests.integration.gateway.harness import Org, auth

pytestmark = pytest.mark.integration
__all__ = ["held", "pipeline", "world"]  # fixtures


def _client(base: str, org: Org) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base, api_key=org.keys["member"], max_retries=0, timeout=30)


def _request(custom_id: str, prompt: str, **params: Any) -> dict[str, Any]:
    ask = {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": prompt}], **params}
    return {"custom_id": custom_id, "params": ask}


async def _ended(client: anthropic.AsyncAnthropic, batch_id: str, within_s: float = 20.0) -> Any:
    deadline = time.monotonic() + within_s
    while (batch := await client.messages.batches.retrieve(batch_id)).processing_status != "ended":
        assert time.monotonic() < deadline, f"batch still {batch.processing_status}"
        await asyncio.sleep(0.1)
    return batch


async def test_a_batch_to_its_results(world: World, pipeline: Pipeline) -> None:
    _, bases, acme, other = world
    client = _client(bases[0], acme)
    no_max_tokens = _request("bad-params", "hello")
    del no_max_tokens["params"]["max_tokens"]
    batch = await client.messages.batches.create(
        requests=[  # type: ignore[list-item]
            _request("ok-1", "What is the capital of France?"),
            _request("fails", "FAIL please"),
            no_max_tokens,
            _request("streams", "hello", stream=True),
            _request("ok-2", "and of Italy?", system="Be brief."),
        ]
    )
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 5
    assert batch.results_url is None and batch.expires_at > batch.created_at

    ended = await _ended(_client(bases[1], acme), batch.id)  # any replica answers
    counts = ended.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled) == (0, 2, 3, 0)
    assert ended.ended_at and ended.results_url == f"{bases[1]}/v1/messages/batches/{batch.id}/results"

    results = {r.custom_id: r.result async for r in await client.messages.batches.results(batch.id)}
    assert list(results) == ["ok-1", "fails", "bad-params", "streams", "ok-2"]  # the requests' order
    ok = results["ok-1"]
    assert ok.type == "succeeded" and ok.message.type == "message" and ok.message.role == "assistant"
    assert ok.message.content[0].type == "text" and ok.message.usage.output_tokens == 2
    assert ok.message.stop_reason == "end_turn"
    bad = results["bad-params"]
    assert bad.type == "errored" and bad.error.type == "error"
    assert bad.error.error.type == "invalid_request_error" and "max_tokens" in bad.error.error.message
    streams = results["streams"]
    assert streams.type == "errored" and "stream" in streams.error.error.message
    fails = results["fails"]
    assert fails.type == "errored" and fails.error.error.type == "api_error"
    assert len(pipeline.seen) == 3  # the bad requests never became tasks

    # Another organisation sees none of it; the OpenAI APIs neither (its requests file is not a file).
    with pytest.raises(anthropic.NotFoundError) as caught:
        await _client(bases[0], other).messages.batches.retrieve(batch.id)
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert caught.value.body["error"]["param"] == "message_batch_id"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        await _client(bases[0], other).messages.batches.cancel(batch.id)
    async with httpx.AsyncClient(base_url=bases[0], headers=auth(acme.keys["member"])) as http:
        assert (await http.get(f"/v1/batches/{batch.id}")).status_code == 404
        assert all(b["id"] != batch.id for b in (await http.get("/v1/batches")).json()["data"])
        files = (await http.get("/v1/files")).json()["data"]
        assert all(f["purpose"] != "message_batch" for f in files)

    # Ended: not cancellable, said in this API's words (its statuses, not the Batch API's `validating`).
    with pytest.raises(anthropic.ConflictError) as conflict:
        await client.messages.batches.cancel(batch.id)
    said = conflict.value.body["error"]  # type: ignore[index]
    assert said["code"] == "batch_not_cancellable"
    assert said["message"] == "the message batch has ended: only a message batch in progress can be cancelled"

    # Deleted once ended: gone, its results with it.
    deleted = await client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve(batch.id)
    async with httpx.AsyncClient(base_url=bases[0], headers=auth(acme.keys["member"])) as http:
        assert (await http.get(f"/v1/messages/batches/{batch.id}/results")).status_code == 404


async def test_refused_requests(world: World) -> None:
    _, bases, acme, _ = world
    client = _client(bases[0], acme)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.batches.create(
            requests=[_request("same", "a"), _request("same", "b")]  # type: ignore[list-item]
        )
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error" and error["code"] == "duplicate_custom_id"
    assert error["param"] == "requests.1.custom_id"
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.batches.create(requests=[_request("not ok!", "a")])  # type: ignore[list-item]
    assert "custom_id" in str(caught.value.body)
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.batches.create(requests=[])


async def test_cancel_paging_and_delete(world: World, held: Pipeline) -> None:
    _, bases, acme, _ = world
    client = _client(bases[0], acme)
    batch = await client.messages.batches.create(
        requests=[_request(f"r{i}", f"question {i}") for i in range(5)]  # type: ignore[misc]
    )
    deadline = time.monotonic() + 30
    while len(held.held) < 2:  # the concurrency: two lines in flight
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    with pytest.raises(anthropic.ConflictError):  # still processing: cancel it first
        await client.messages.batches.delete(batch.id)
    await held.answer(held.held.pop(0))
    canceling = await client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    ended = await _ended(client, batch.id)
    assert ended.request_counts.succeeded == 1 and ended.request_counts.canceled == 4
    results = [r async for r in await client.messages.batches.results(batch.id)]
    assert [r.result.type for r in results] == ["succeeded"] + ["canceled"] * 4

    more = [await client.messages.batches.create(requests=[_request("x", "y")]) for _ in range(2)]  # type: ignore[list-item]
    newest_first = [more[1].id, more[0].id, batch.id]
    pages = client.messages.batches.list(limit=1)
    listed = [b.id async for b in pages]
    assert listed[:3] == newest_first
    page = await client.messages.batches.list(limit=2, before_id=batch.id)
    assert [b.id for b in page.data] == newest_first[:2] and not page.has_more
    page = await client.messages.batches.list(limit=1, before_id=batch.id)
    assert [b.id for b in page.data] == [more[0].id] and page.has_more
    page = await client.messages.batches.list(limit=1, after_id=more[1].id)
    assert [b.id for b in page.data] == [more[0].id] and page.has_more
    await held.release()
    for made in more:
        assert (await _ended(client, made.id)).request_counts.succeeded == 1


async def test_the_keys_model_allow_list_applies_to_each_request(world: World, pipeline: Pipeline) -> None:
    """A key limited to `auto`: a request naming another served model is its own `errored` result (403
    `permission_error`, as POST /v1/messages answers it); the others run."""
    _, bases, acme, _ = world
    key = await auto_only_key(bases, acme)
    client = anthropic.AsyncAnthropic(base_url=bases[0], api_key=key, max_retries=0, timeout=30)
    named = _request("named", "hello", model="local/smollm2-135m-instruct")
    batch = await client.messages.batches.create(requests=[_request("routed", "hello"), named])  # type: ignore[list-item]
    await _ended(client, batch.id)
    results = {r.custom_id: r.result async for r in await client.messages.batches.results(batch.id)}
    assert results["routed"].type == "succeeded"
    refused = results["named"]
    assert refused.type == "errored" and refused.error.error.type == "permission_error"
    assert "not allowed for this API key" in refused.error.error.message


async def _file(url: str, tenant_id: str, file_id: str) -> FileObject | None:
    nc = await nats.connect(url)
    try:
        index = await nc.jetstream().key_value(subjects.KV_FILES)
        try:
            entry = await index.get(file_key(tenant_id, file_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        return FileObject.model_validate_json(entry.value) if entry.value else None
    finally:
        await nc.close()


async def test_the_requests_file_expires_within_the_hour(world: World, pipeline: Pipeline) -> None:
    """A batch's requests file (hidden from the Files API, counted in the organisation's share) expires an
    hour after it is stored, kept past that only while its batch has not ended (the Batch API's `in_use`):
    a replica that dies between storing it and creating the batch leaves it an hour, not 29 days in which
    the organisation could neither see nor delete it. The results file is kept 29 days."""
    server, bases, acme, _ = world
    client = _client(bases[0], acme)
    batch = await client.messages.batches.create(requests=[_request("one", "hello")])  # type: ignore[list-item]
    record = await batch_record(server.url, batch.id)
    requests = await _file(server.url, acme.id, record.batch.input_file_id)
    assert requests is not None and requests.expires_at is not None
    assert requests.expires_at - requests.created_at <= 3600
    await _ended(client, batch.id)
    record = await batch_record(server.url, batch.id)
    assert record.batch.output_file_id is not None
    results = await _file(server.url, acme.id, record.batch.output_file_id)
    assert results is not None and results.expires_at is not None
    assert results.expires_at - results.created_at == 29 * 24 * 3600


def _kib(pid: int, field: str) -> int:
    rows = dict(row.split(":", 1) for row in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(rows[field].split()[0])


async def test_a_large_create_is_read_in_bounded_memory(world: World) -> None:
    """A 40 MiB create, refused at its last request (a custom_id used before, so nothing runs), takes the
    gateway's peak memory up a few MiB: the body was read, checked and stored as it came, then dropped
    from the store. Read whole, it took the peak up ~190 MiB (the body, its parse and its lines)."""
    server, bases, acme, _ = world
    ask = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "x" * 2000}]}
    requests = [{"custom_id": f"r{i}", "params": ask} for i in range(20_000)]
    body = orjson.dumps({"requests": [*requests, {"custom_id": "r7", "params": ask}]})
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    stored = (await js.stream_info(f"OBJ_{subjects.OBJ_FILES}")).state
    pid = bases.procs[0].pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
    idle = _kib(pid, "VmRSS")
    headers = {"x-api-key": acme.keys["member"], "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(f"{bases[0]}/v1/messages/batches", content=body, headers=headers)
    grew_mib = (_kib(pid, "VmHWM") - idle) / 1024
    after = (await js.stream_info(f"OBJ_{subjects.OBJ_FILES}")).state
    await nc.close()
    error = answer.json()["error"]
    assert answer.status_code == 400, answer.text
    assert (error["code"], error["param"]) == ("duplicate_custom_id", "requests.20000.custom_id")
    assert grew_mib < 64, grew_mib  # the body is 40 MiB
    assert (after.messages, after.bytes) == (stored.messages, stored.bytes)  # nothing left behind
