"""Files and batches as an operator sees them, on a gateway process, a real nats-server and SQLite: uploads
and batch creations take the requests-per-minute limit (5 a user here), the default expiry of an upload, an
input file past its expiry kept while its batch runs, and the metrics at /metrics. Each test has its own
organisation (its own user's window). The pipeline is the harness's Answerer."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import nats
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchyard.cli.processes import NatsServer
from switchyard.common import kv, subjects
from switchyard.gateway.files.models import FileObject
from switchyard.gateway.files.store import file_key
from tests.integration.gateway.harness import (
    Answerer,
    Org,
    auth,
    gateway_stack,
    make_org,
    wait_for_a_fresh_minute,
)

pytestmark = pytest.mark.integration
USER_RPM = 5
EXPIRES_S = 86_400  # SWITCHYARD_FILES_BATCH_EXPIRES_S here (30 days by default)
LINE = {
    "custom_id": "q",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "capital?"}]},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, str]]:
    tmp = tmp_path_factory.mktemp("files-ops")
    env = {
        "SWITCHYARD_LIMIT_USER_REQUESTS_PER_MIN": str(USER_RPM),
        "SWITCHYARD_FILES_BATCH_EXPIRES_S": str(EXPIRES_S),
        "SWITCHYARD_BATCH_LEASE_S": "1",
        "SWITCHYARD_BATCH_SCAN_S": "0.3",
        "SWITCHYARD_BATCH_POLL_S": "0.1",
    }
    with gateway_stack(tmp, env=env) as (server, db_url, (base,)):
        yield server, db_url, base


@pytest.fixture
async def answerer(world: tuple[NatsServer, str, str]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(world[0].url)
    yield me
    await me.close()


@pytest.fixture
async def held(world: tuple[NatsServer, str, str]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(world[0].url, hold=True)
    yield me
    await me.release()
    await me.close()


def _sdk(base: str, org: Org) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=org.keys["member"], max_retries=0, timeout=30)


def _jsonl(*lines: dict[str, object]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


async def _metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=base) as http:
        text = (await http.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _grew(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def _until(client: openai.AsyncOpenAI, batch_id: str, status: str) -> openai.types.Batch:
    deadline = time.monotonic() + 20
    while (batch := await client.batches.retrieve(batch_id)).status != status:
        assert time.monotonic() < deadline, f"batch still {batch.status}, not {status}"
        await asyncio.sleep(0.1)
    return batch


async def test_uploads_and_batch_creations_take_the_requests_per_minute_limit(
    world: tuple[NatsServer, str, str],
) -> None:
    _, db_url, base = world
    org = await make_org(db_url, "limited", roles=("member",))
    await asyncio.to_thread(wait_for_a_fresh_minute, 20.0)
    before = await _metrics(base)
    bad_model = {**LINE, "body": {**LINE["body"], "model": "nope/none"}}  # type: ignore[dict-item]
    files = {"file": ("in.jsonl", _jsonl(bad_model))}
    async with httpx.AsyncClient(base_url=base, headers=auth(org.keys["member"]), timeout=10) as http:
        first = await http.post("/v1/files", files=files, data={"purpose": "batch"})
        assert first.status_code == 200, first.text
        assert first.headers["x-ratelimit-limit-requests"] == str(USER_RPM)
        assert first.headers["x-ratelimit-remaining-requests"] == str(USER_RPM - 1)
        assert "x-ratelimit-limit-tokens" not in first.headers  # an upload takes no tokens
        ask = {
            "input_file_id": first.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        created = await http.post("/v1/batches", json=ask)  # its line's model fails it: no line runs
        assert created.status_code == 200, created.text
        assert created.headers["x-ratelimit-remaining-requests"] == str(USER_RPM - 2)
        for _ in range(USER_RPM - 2):
            assert (await http.post("/v1/files", files=files, data={"purpose": "batch"})).status_code == 200
        refused = await http.post("/v1/files", files=files, data={"purpose": "batch"})
        refused_batch = await http.post("/v1/batches", json=ask)
        listed = await http.get("/v1/files")  # reads are not limited
    for answer in (refused, refused_batch):
        assert answer.status_code == 429, answer.text
        error = answer.json()["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        assert "(user): limit 5" in error["message"]
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["x-ratelimit-remaining-requests"] == "0"
        assert answer.headers["x-ratelimit-reset-requests"].endswith("s")
    assert listed.status_code == 200 and len(listed.json()["data"]) == USER_RPM - 1  # the refused one: none
    after = await _metrics(base)
    refusals = "switchyard_gateway_file_uploads_refused_total"
    assert _grew(before, after, refusals, code="rate_limit_exceeded") == 1
    added = _grew(before, after, "switchyard_gateway_files_added_total", purpose="batch")
    assert added == USER_RPM - 1
    assert (
        _grew(before, after, "switchyard_gateway_batches_created_total", endpoint="/v1/chat/completions") == 1
    )


async def test_an_upload_expires_by_default_and_a_finished_batch_is_counted(
    world: tuple[NatsServer, str, str], answerer: Answerer
) -> None:
    _, db_url, base = world
    client = _sdk(base, await make_org(db_url, "metered", roles=("member",)))
    before = await _metrics(base)
    data = _jsonl(LINE, {**LINE, "custom_id": "r"})
    uploaded = await client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    assert uploaded.expires_at == uploaded.created_at + EXPIRES_S  # none asked: the default
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = await _until(client, batch.id, "completed")
    assert done.request_counts.completed == 2 and done.output_file_id and not done.error_file_id
    output = await client.files.retrieve(done.output_file_id)
    assert output.expires_at is None  # batch_output: kept until deleted, as OpenAI's other purposes
    await client.files.delete(uploaded.id)
    after = await _metrics(base)
    grew = {
        ("switchyard_gateway_batches_finished_total", "status", "completed"): 1,
        ("switchyard_gateway_batch_lines_total", "outcome", "completed"): 2,
        ("switchyard_gateway_batch_lines_total", "outcome", "failed"): 0,
        ("switchyard_gateway_files_added_total", "purpose", "batch"): 1,
        ("switchyard_gateway_files_added_bytes_total", "purpose", "batch"): len(data),
        ("switchyard_gateway_files_added_total", "purpose", "batch_output"): 1,
        ("switchyard_gateway_files_added_bytes_total", "purpose", "batch_output"): output.bytes,
        ("switchyard_gateway_files_removed_total", "reason", "deleted"): 1,
        ("switchyard_gateway_files_removed_bytes_total", "reason", "deleted"): len(data),
    }
    assert {k: _grew(before, after, k[0], **{k[1]: k[2]}) for k in grew} == grew


async def _lapse(server: NatsServer, tenant_id: str, file_id: str) -> None:
    """The file's `expires_at` moved into the past, as if it had been uploaded long ago."""

    def lapsed(current: bytes | None) -> tuple[bytes, None]:
        file = FileObject.model_validate_json(current or b"{}")
        return file.model_copy(update={"expires_at": int(time.time()) - 1}).model_dump_json().encode(), None

    nc = await nats.connect(server.url)
    try:
        await kv.update(
            await nc.jetstream().key_value(subjects.KV_FILES), file_key(tenant_id, file_id), lapsed
        )
    finally:
        await nc.close()


async def test_an_input_file_past_its_expiry_is_gone_for_clients_but_read_by_its_batch(
    world: tuple[NatsServer, str, str], held: Answerer
) -> None:
    """Past its `expires_at`, a running batch's input file is gone for the organisation as any expired
    file is (404 `file_not_found`, not listed, no new batch from it), while that batch still reads it (its
    output needs the lines' custom_ids); the first list after the batch ended removes it."""
    server, db_url, base = world
    org = await make_org(db_url, "keeper", roles=("member",))
    client = _sdk(base, org)
    uploaded = await client.files.create(file=("in.jsonl", io.BytesIO(_jsonl(LINE))), purpose="batch")
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 10
    while not held.held:  # its line is running
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await _lapse(server, org.id, uploaded.id)
    before = await _metrics(base)
    with pytest.raises(openai.NotFoundError) as refused:  # a new batch of it: as of any expired file
        await client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert refused.value.body == {  # type: ignore[comparison-overlap]
        "message": f"No such File object: {uploaded.id}",
        "type": "invalid_request_error",
        "param": "input_file_id",
        "code": "file_not_found",
        "request_id": refused.value.response.headers["x-request-id"],
    }
    for gone in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError):
            await gone(uploaded.id)
    assert (await client.files.list()).data == []
    await held.release()
    done = await _until(client, batch.id, "completed")
    assert [
        line["custom_id"]
        for line in map(json.loads, (await client.files.content(done.output_file_id or "")).text.splitlines())
    ] == ["q"]
    assert [f.id for f in (await client.files.list()).data] == [done.output_file_id]
    after = await _metrics(base)
    assert _grew(before, after, "switchyard_gateway_files_removed_total", reason="expired") == 1
    assert _grew(before, after, "switchyard_gateway_files_removed_total", reason="deleted") == 0
    assert _grew(before, after, "switchyard_gateway_batches_finished_total", status="completed") == 1
