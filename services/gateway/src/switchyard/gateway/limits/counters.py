"""The bucket of the gateway's integer counters in JetStream KV (rate limits, quotas, spend, failed
logins). The counters themselves are `switchyard.common.leases.IntCounters` (compare-and-set through
`switchyard.common.kv.update`), taken through leases or, for the lockout's failure counts, directly."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from switchyard.common import kv


async def counter_bucket(js: JetStreamContext, name: str, *, ttl_s: float | None) -> KeyValue:
    return await kv.bucket(js, name, ttl_s=ttl_s)
