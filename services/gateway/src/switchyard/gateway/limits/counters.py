"""The bucket of the gateway's integer counters in JetStream KV (rate limits, quotas, spend, failed
logins). The counters themselves are `switchyard.common.leases.IntCounters` (compare-and-set through
`switchyard.common.kv.update`), taken through leases or, for the lockout's failure counts, directly."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue


async def counter_bucket(js: JetStreamContext, name: str, *, ttl_s: float) -> KeyValue:
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=name, history=1, ttl=ttl_s)
