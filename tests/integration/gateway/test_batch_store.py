"""Batches in a real JetStream KV: an organisation's list (newest first, paged, no other organisation's),
the runners' active list, and the lease: held by one replica, taken by another once it lapses, and won by
exactly one of two replicas claiming at once (compare-and-set on the record's revision)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.gateway.batches.lease import Knobs
from switchyard.gateway.batches.models import Batch, BatchRecord, Runner
from switchyard.gateway.batches.runner import BatchRunner
from switchyard.gateway.batches.running import BatchRun
from switchyard.gateway.batches.service import Batches
from switchyard.gateway.batches.store import BatchStore, batches_bucket, new_batch_id
from switchyard.gateway.errors import NotFound, RateLimited
from switchyard.gateway.files.share import Share
from switchyard.gateway.files.store import files_bucket
from switchyard.gateway.taskapi.idempotency import BodyKey
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.integration


def _record(tenant: str) -> BatchRecord:
    now = int(time.time())
    batch = Batch(
        id=new_batch_id(),
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        status="validating",
        created_at=now,
        expires_at=now + 86400,
    )
    return BatchRecord(batch=batch, tenant_id=tenant, user_id=None, api_key_id="key_1")


def _runner(store: BatchStore, replica: str) -> BatchRunner:
    knobs = Knobs(replica=replica, concurrency=1, lease_s=30.0, poll_s=1.0, principal_ttl_s=30.0)
    return BatchRunner(None, store, knobs, max_running=1, scan_s=1.0)  # type: ignore[arg-type]


async def _store(url: str) -> tuple[nats.NATS, BatchStore]:
    nc = await nats.connect(url)
    return nc, BatchStore(await batches_bucket(nc.jetstream()))


async def test_lists_are_per_organisation_newest_first(nats_server: NatsServer) -> None:
    nc, store = await _store(nats_server.url)
    try:
        mine = [_record("acme") for _ in range(3)]
        for record in [*mine, _record("other")]:
            await store.create(record)
        ids = [r.batch.id for r in reversed(mine)]
        page, more = await store.page(tenant_id="acme", after=None, limit=2)
        assert [b.id for b in page] == ids[:2] and more
        rest, more = await store.page(tenant_id="acme", after=page[-1].id, limit=2)
        assert [b.id for b in rest] == ids[2:] and not more
        with pytest.raises(NotFound):
            await store.get(tenant_id="other", batch_id=mine[0].batch.id)
        assert await store.read("batch_../x") is None
        assert len(await store.active()) == 4
        assert (await store.unfinished(tenant_id="acme"), await store.unfinished(tenant_id="other")) == (3, 1)
        await store.finished(mine[0].batch.id, tenant_id="acme")
        assert mine[0].batch.id not in await store.active()
        assert await store.unfinished(tenant_id="acme") == 2  # its key purged, not left as a marker
    finally:
        await nc.close()


async def test_one_replica_holds_the_lease_until_it_lapses(nats_server: NatsServer) -> None:
    nc, store = await _store(nats_server.url)
    nc2, other_store = await _store(nats_server.url)
    try:
        record = _record("acme")
        await store.create(record)
        batch_id = record.batch.id
        a, b = _runner(store, "a"), _runner(other_store, "b")
        held = await store.change(batch_id, a._claim)
        assert held is not None and held.runner is not None and held.runner.owner == "a"
        kept = await other_store.change(batch_id, b._claim)
        assert kept is not None and kept.runner is not None and kept.runner.owner == "a"  # not lapsed yet

        lapse = Runner(owner="a", until=time.time() - 1)  # replica a died a while ago
        await store.change(batch_id, lambda r: r.model_copy(update={"runner": lapse}))
        claims = await asyncio.gather(
            store.change(batch_id, a._claim), other_store.change(batch_id, b._claim)
        )
        owners = {c.runner.owner for c in claims if c is not None and c.runner is not None}
        final = await store.read(batch_id)
        assert final is not None and final.runner is not None
        assert owners == {final.runner.owner}  # exactly one claim took effect; the other saw it
        winner = final.runner.owner
        loser = b if winner == "a" else a
        loser_store = other_store if winner == "a" else store
        again = await loser_store.change(batch_id, loser._claim)
        assert again is not None and again.runner is not None and again.runner.owner == winner
    finally:
        await nc.close()
        await nc2.close()


class _Holding(BatchRunner):
    """A runner whose runs never end (what they would do is not the point here: which it takes up is)."""

    async def _run(self, run: BatchRun) -> None:
        await asyncio.Event().wait()


async def test_one_organisations_many_batches_leave_runs_for_another(nats_server: NatsServer) -> None:
    """Oldest first, an organisation with many batches took every run of a replica, and another's batch
    waited until one of them ended (hours, or the whole day): now it takes its share (half) while others
    wait, and the rest only when nobody else does."""
    nc, store = await _store(nats_server.url)
    knobs = Knobs(replica="r", concurrency=1, lease_s=30.0, poll_s=1.0, principal_ttl_s=30.0)
    runner = _Holding(None, store, knobs, max_running=2, scan_s=1.0)  # type: ignore[arg-type]
    alone = _Holding(None, store, replace(knobs, replica="s"), max_running=2, scan_s=1.0)  # type: ignore[arg-type]
    try:
        tenant = f"big{time.time_ns()}"
        many = [_record(tenant) for _ in range(3)]
        late = _record(f"small{time.time_ns()}")
        for record in [*many, late]:
            await store.create(record)
        await runner.scan()
        assert set(runner._runs) == {many[0].batch.id, late.batch.id}
        await alone.scan()  # only the big organisation's are left: it takes them all
        assert set(alone._runs) == {many[1].batch.id, many[2].batch.id}
    finally:
        for held in (runner, alone):
            for _, task in held._runs.values():
                task.cancel()
        await nc.close()


async def test_an_organisation_with_its_limit_of_unfinished_batches_gets_429(nats_server: NatsServer) -> None:
    """Without a limit, one key could enqueue batches by the thousand (each file re-used any number of
    times): every replica's scan reads every active batch, and they all wait their turn."""
    nc, store = await _store(nats_server.url)
    try:
        files = await files_bucket(nc.jetstream(), max_bytes=1024**2)
        batches = Batches(
            store,
            files,
            _runner(store, "r"),
            share=Share(files=100, bytes=1024**2),
            max_unfinished=2,
            body_key=BodyKey(b"k" * 32),
        )
        acme = Principal(tenant_id="acme", api_key_id="key_1", user_id=None, key_prefix="p")
        other = Principal(tenant_id="other", api_key_id="key_2", user_id=None, key_prefix="q")

        async def create(principal: Principal) -> Batch:
            file = await files.put(
                tenant_id=principal.tenant_id, purpose="batch", filename="r.jsonl", data=b"{}\n"
            )
            body = {"input_file_id": file.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
            return await batches.create(principal=principal, body=orjson.dumps(body))

        first, _ = await create(acme), await create(acme)
        with pytest.raises(RateLimited) as refused:
            await create(acme)
        assert (refused.value.status, refused.value.code) == (429, "batch_limit_exceeded")
        assert "SWITCHYARD_BATCH_ORG_UNFINISHED" in refused.value.message
        await create(other)  # another organisation's count is its own
        await store.finished(first.id, tenant_id="acme")
        await create(acme)
    finally:
        await nc.close()


async def test_a_batch_still_validating_past_its_window_expires(nats_server: NatsServer) -> None:
    """Its models could not be checked (no provider announced): each run gave up and the next scan tried
    again, for ever, the batch `validating` and counted among its organisation's unfinished ones."""
    nc, store = await _store(nats_server.url)
    try:
        record = _record("acme")
        record = record.model_copy(update={"batch": record.batch.model_copy(update={"expires_at": 1})})
        await store.create(record)
        held = await store.change(record.batch.id, _runner(store, "r")._claim)
        assert held is not None
        knobs = Knobs(replica="r", concurrency=1, lease_s=30.0, poll_s=1.0, principal_ttl_s=30.0)
        await BatchRun(None, store, knobs, held).run()  # type: ignore[arg-type]  # nothing else is needed
        ended = await store.read(record.batch.id)
        assert ended is not None and ended.batch.status == "expired" and ended.batch.expired_at
        assert record.batch.id not in await store.active()
        assert await store.unfinished(tenant_id="acme") == 0
    finally:
        await nc.close()
