"""A batch's output and error files written again, by a replica taking the batch over after its runner died
between writing them and recording them on the batch (`_finish`): the files the dead runner wrote are
replaced, not left in the organisation's files (listed, counted in its share, named by no batch). A real
nats-server: the batches bucket, the file store, the task store."""

from __future__ import annotations

import time
from types import SimpleNamespace

import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import kv
from switchyard.gateway.batches.lease import Knobs
from switchyard.gateway.batches.models import Batch, BatchRecord, RequestCounts, Runner
from switchyard.gateway.batches.running import BatchRun
from switchyard.gateway.batches.store import BatchStore, batches_bucket, new_batch_id
from switchyard.gateway.files.store import files_bucket
from switchyard.gateway.taskapi.store import TaskStore, tasks_bucket

pytestmark = pytest.mark.integration


def _line(custom_id: str) -> bytes:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return orjson.dumps(line) + b"\n"


def _unrecorded(current: bytes | None) -> tuple[bytes, None]:
    """The batch as it stood before its runner's last write (which never came: it died)."""
    record = BatchRecord.model_validate_json(current or b"{}")
    batch = record.batch.model_copy(
        update={"status": "cancelling", "cancelled_at": None, "output_file_id": None, "error_file_id": None}
    )
    return record.model_copy(update={"batch": batch}).model_dump_json().encode(), None


async def test_a_takeover_writing_the_files_again_leaves_no_orphan(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        files = await files_bucket(js)
        bucket = await batches_bucket(js)
        store = BatchStore(bucket)
        gw = SimpleNamespace(
            files=files,
            runs=SimpleNamespace(store=TaskStore(await tasks_bucket(js), js)),
            settings=SimpleNamespace(max_body_bytes=1_000_000),
        )
        data = _line("a") + _line("b")
        source = await files.put(tenant_id="acme", purpose="batch", filename="in.jsonl", data=data)
        now = int(time.time())
        batch = Batch(
            id=new_batch_id(),
            endpoint="/v1/chat/completions",
            input_file_id=source.id,
            status="cancelling",  # cancelled before any line ran: both lines in the error file
            created_at=now,
            in_progress_at=now,
            cancelling_at=now,
            expires_at=now + 86400,
            request_counts=RequestCounts(total=2),
        )
        runner = Runner(owner="r", until=time.time() + 30)
        record = BatchRecord(batch=batch, tenant_id="acme", user_id=None, api_key_id="key_1", runner=runner)
        assert await store.create(record)
        knobs = Knobs(replica="r", concurrency=1, lease_s=30.0, poll_s=1.0, principal_ttl_s=30.0)

        await BatchRun(gw, store, knobs, record)._finish()  # type: ignore[arg-type]  # what it uses
        first = await store.read(batch.id)
        assert first is not None and first.batch.status == "cancelled" and first.batch.error_file_id
        await kv.update(bucket, f"b.{batch.id}", _unrecorded)
        again = await store.read(batch.id)
        assert again is not None
        await BatchRun(gw, store, knobs, again)._finish()  # type: ignore[arg-type]

        ended = await store.read(batch.id)
        assert ended is not None and ended.batch.status == "cancelled"
        listed, _ = await files.list(
            tenant_id="acme", purpose="batch_output", limit=100, after=None, order="desc"
        )
        assert [f.id for f in listed] == [ended.batch.error_file_id]
        content = b"".join([c async for c in (await files.open(tenant_id="acme", file_id=listed[0].id))[1]])
        assert [orjson.loads(x)["custom_id"] for x in content.splitlines()] == ["a", "b"]
    finally:
        await nc.close()
