"""Batches in a real JetStream KV: an organisation's list (newest first, paged, no other organisation's),
the runners' active list, and the lease: held by one replica, taken by another once it lapses, and won by
exactly one of two replicas claiming at once (compare-and-set on the record's revision)."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.gateway.batches.models import Batch, BatchRecord, Runner
from switchyard.gateway.batches.runner import BatchRunner
from switchyard.gateway.batches.running import Knobs
from switchyard.gateway.batches.store import BatchStore, batches_bucket, new_batch_id
from switchyard.gateway.errors import NotFound

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
        await store.finished(mine[0].batch.id)
        assert mine[0].batch.id not in await store.active()
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
