"""A batch's life after it starts, on the Batch API's test world (batches_world: two gateway processes, a
real nats-server, the OpenAI SDK): cancelled, past its window, its memory while it runs, its input file
deleted, its key revoked, its runner killed and another replica taking over without submitting a line
twice."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import openai
import pytest
from sqlalchemy import select

from switchyard.common import kv, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.gateway.batches.models import BatchRecord
from switchyard.gateway.keys import parse_prefix
from switchyard.gateway.models import ApiKey
from tests.integration.gateway.batches_world import (
    Pipeline,
    World,
    batch_record,
    chat_line,
    held,
    pipeline,
    read_jsonl,
    running_batch,
    sdk_client,
    started_batch,
    until_status,
    upload_lines,
    world,
)
from tests.integration.gateway.harness import auth

pytestmark = pytest.mark.integration
__all__ = ["held", "pipeline", "world"]  # fixtures


async def _ended(client: openai.AsyncOpenAI, batch_id: str, status: str, count: int, code: str) -> Any:
    """The batch once `status`, what finished in its output, every other line of `count` in its error
    file with `response: null` and `error.code` `code`."""
    ended = await until_status(client, batch_id, status)
    assert ended.request_counts.completed >= 1
    output = await read_jsonl(client, ended.output_file_id)
    errors = await read_jsonl(client, ended.error_file_id)
    assert sorted(line["custom_id"] for line in output + errors) == [f"r{i}" for i in range(count)]
    assert errors and all(e["response"] is None and e["error"]["code"] == code for e in errors)
    return ended


async def test_cancel_stops_a_running_batch(world: World, held: Pipeline) -> None:
    _, bases, acme, _ = world
    client = sdk_client(bases[0], acme)
    batch = await running_batch(client, held, 5)
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


async def test_a_batch_past_its_window_expires_with_what_it_finished(world: World, held: Pipeline) -> None:
    server, bases, acme, _ = world
    client = sdk_client(bases[0], acme)
    batch = await running_batch(client, held, 4)
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
    world: World, held: Pipeline
) -> None:
    """A running batch reads its input file as its lines are submitted: while its 2 lines in flight are held,
    the runner holds those and a chunk of the file, not the file's 600 requests of 48 KB (28 MiB, which it
    used to keep until the batch ended)."""
    server, bases, acme, _ = world
    client = sdk_client(bases[0], acme, "admin")
    rows = [chat_line(f"r{i}", f"question {i} " + "x" * 48_000) for i in range(600)]
    file_id = await upload_lines(client, rows)
    before = [_rss_mib(proc.pid) for proc in bases.procs]
    batch = await started_batch(client, held, file_id)
    await asyncio.sleep(0.5)  # the next line read, waiting for a slot
    record = await batch_record(server.url, batch.id)
    assert record.runner is not None and record.batch.request_counts.total == 600
    runner = 0 if record.runner.owner.startswith("gateway-0") else 1
    grown = _rss_mib(bases.procs[runner].pid) - before[runner]
    assert grown < 10, f"the runner grew {grown:.1f} MiB for a 28 MiB file"
    assert len(held.seen) == 2
    await client.batches.cancel(batch.id)
    cancelled = await until_status(client, batch.id, "cancelled", within_s=60)
    assert (cancelled.request_counts.total, cancelled.request_counts.completed) == (600, 0)


async def test_a_batch_whose_input_file_is_deleted_fails_saying_so(world: World, held: Pipeline) -> None:
    """The runner reads the input file as it needs it: one deleted while its batch runs fails the batch
    (`file_not_found` in its `errors`, naming it), its tasks still running are cancelled and no other line
    is submitted; no output or error file is written (their custom_ids are in the file)."""
    _, bases, acme, _ = world
    client = sdk_client(bases[0], acme, "admin")
    batch = await running_batch(client, held, 4)
    await client.files.delete(batch.input_file_id)
    failed = await until_status(client, batch.id, "failed")
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
    world: World, held: Pipeline
) -> None:
    _, bases, acme, _ = world
    batch = await running_batch(sdk_client(bases[0], acme), held, 4)
    await _revoke(bases.db_url, acme.keys["member"])  # type: ignore[attr-defined]
    await asyncio.sleep(1.0)  # longer than the principal is trusted for (SWITCHYARD_AUTH_CACHE_TTL_S)
    await held.release()
    admin = sdk_client(bases[0], acme, "admin")
    done = await until_status(admin, batch.id, "completed")
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)
    errors = await read_jsonl(admin, done.error_file_id)
    assert [e["custom_id"] for e in errors] == ["r2", "r3"]
    assert {e["response"]["status_code"] for e in errors} == {401}
    assert {e["response"]["body"]["error"]["code"] for e in errors} == {"invalid_api_key"}
    assert len(held.seen) == 2  # the tasks already submitted ran; no other was


async def test_another_replica_takes_over_a_batch_whose_runner_died(world: World, held: Pipeline) -> None:
    """Last in this module: it kills a replica (and runs as the admin: the member's key was revoked). The
    replica dies once its progress says r0 is done: the survivor reads the input file again from r1 on,
    follows the tasks of r1 and r2 and submits r3."""
    server, bases, acme, _ = world
    batch = await running_batch(sdk_client(bases[0], acme, "admin"), held, 4)
    await held.answer(held.held.pop(0))  # r0 done: r2 is submitted in its slot
    deadline = time.monotonic() + 10
    while (record := await batch_record(server.url, batch.id)).done_below < 1 or len(held.held) < 2:
        assert time.monotonic() < deadline, "r0's result never written with the lease"
        await asyncio.sleep(0.1)
    assert record.runner is not None
    dying = 0 if record.runner.owner.startswith("gateway-0") else 1
    bases.procs[dying].kill()
    bases.procs[dying].wait(5)
    survivor = sdk_client(bases[1 - dying], acme, "admin")
    await held.release()  # the dead runner's tasks end; the survivor finds their results
    done = await until_status(survivor, batch.id, "completed", within_s=20)
    assert done.request_counts.completed == 4
    output = await read_jsonl(survivor, done.output_file_id)
    assert [line["custom_id"] for line in output] == [f"r{i}" for i in range(4)]
    assert len(held.seen) == 4 and len({t.task_id for t in held.seen}) == 4  # none twice
    taken = await batch_record(server.url, batch.id)
    assert taken.runner is None and taken.batch.status == "completed"
