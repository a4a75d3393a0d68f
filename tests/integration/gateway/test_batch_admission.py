"""Batch lines leave their organisation's interactive share of its concurrency free (real JetStream KV,
two limiters sharing the counters as two gateway replicas do): lines beyond the batch slots are refused as
the concurrency limit refuses (they wait), interactive requests are admitted up to the whole limit, and a
batch line that ends gives its batch slot back."""

from __future__ import annotations

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common.events import ChatRequest
from switchyard.common.leases import IntCounters, Leases, SlotTable
from switchyard.common.policy import load_policy
from switchyard.gateway.admission import Admission, Pass
from switchyard.gateway.errors import RateLimited
from switchyard.gateway.limits.control import Control, control_bucket
from switchyard.gateway.limits.counters import counter_bucket
from switchyard.gateway.limits.models import Limits
from switchyard.gateway.limits.service import RateLimiter
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.integration
REQUEST = ChatRequest(model="auto", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
ALICE = Principal(tenant_id="acme", api_key_id="k1", user_id="alice", key_prefix="sk-1", plan="free")
LIMITS = Limits(org_concurrent_tasks=6, batch_interactive_share=0.5)  # 3 batch slots


async def _replica(js: object) -> Admission:
    bucket = await counter_bucket(js, "test-batch-limits", ttl_s=3600)  # type: ignore[arg-type]
    control = Control(await control_bucket(js))  # type: ignore[arg-type]
    limiter = RateLimiter(Leases(IntCounters(bucket)), Leases(SlotTable(bucket)), LIMITS, control)
    return Admission(load_policy(), limiter, None, default_max_tokens=16)


async def _refused(admission: Admission, *, batch: bool) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        await admission.admit(ALICE, REQUEST, providers={"local"}, batch=batch)
    return refused.value


async def test_batch_lines_leave_the_interactive_share_free_on_every_replica(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        one, two = await _replica(nc.jetstream()), await _replica(nc.jetstream())
        lines: list[Pass] = [
            await r.admit(ALICE, REQUEST, providers={"local"}, batch=True) for r in (one, two)
        ]
        lines.append(await one.admit(ALICE, REQUEST, providers={"local"}, batch=True))
        for replica in (one, two):  # 3 of 6 held by batch lines: no replica admits a fourth
            refused = await _refused(replica, batch=True)
            assert refused.code == "concurrency_limit_exceeded" and refused.status == 429
            assert "org batches" in refused.message and refused.headers["retry-after"] == "1"
        interactive = [await r.admit(ALICE, REQUEST, providers={"local"}) for r in (one, two, two)]
        refused = await _refused(one, batch=False)  # the whole limit: 3 lines and 3 interactive
        assert refused.code == "concurrency_limit_exceeded" and "(org)" in refused.message
        await interactive.pop().close()
        assert await _refused(two, batch=True)  # an interactive slot free: still no batch line
        await lines.pop().close()
        lines.append(await two.admit(ALICE, REQUEST, providers={"local"}, batch=True))  # its slot back
        for admitted in lines + interactive:
            await admitted.close()
    finally:
        await nc.close()
