"""The calls a run of a task made before its executor's stop cut it, carried to the run that redoes it.

A task still running when its executor stops (a rolling restart, past the stop grace) is cut: its calls
in flight are cancelled and recorded as billed (billing charges them from their `provider.call` records),
and its message goes back to the stream for another replica. The run that redoes it reports only its own
calls in its result's `charged`, so the gateway's budgets, which settle from the result, never counted
what the cut run was billed. The cut run keeps its billed calls here, by task id, and a redelivered run
starts from them: its result then says everything the task was billed for, whichever run made the calls.
Billing is unchanged (it charges each call once, from its record). Kept by a hash of tenant and task id
(a task published by another system may carry an id no KV key can, or one another tenant uses). Best
effort: a store that fails costs the budgets those calls, never the task.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import TypeAdapter, ValidationError

from switchyard.common import kv, subjects
from switchyard.common.events import ChargedCall

log = logging.getLogger(__name__)

KEEP_S = 24 * 3600.0  # far past the stream's redeliveries of a task (its max_deliver backoff)
STORE_TIMEOUT_S = 2.0
_CALLS = TypeAdapter(list[ChargedCall])


async def carried_bucket(js: JetStreamContext) -> KeyValue:
    return await kv.bucket(js, subjects.KV_CARRIED, ttl_s=KEEP_S)


class CarriedCalls:
    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    async def keep(self, tenant_id: str, task_id: str, calls: list[ChargedCall]) -> None:
        """Keeps what a cut run of `task_id` was billed for (earlier cut runs' calls included)."""
        raw = orjson.dumps([c.model_dump(mode="json") for c in calls])
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                await self._bucket.put(kv.tenant_key(tenant_id, task_id), raw)
        except Exception as exc:
            log.warning(
                "task %s: could not keep the %d calls its cut run was billed for: %r",
                task_id,
                len(calls),
                exc,
            )

    async def take(self, tenant_id: str, task_id: str) -> list[ChargedCall]:
        """What earlier runs of `task_id` cut by a stop were billed for (none: an empty list)."""
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                value, _ = await kv.read(self._bucket, kv.tenant_key(tenant_id, task_id))
        except Exception as exc:
            log.warning("task %s: could not read what its earlier runs were billed for: %r", task_id, exc)
            return []
        try:
            return _CALLS.validate_json(value or b"[]")
        except ValidationError as exc:
            log.warning("task %s: ignoring unreadable calls of its earlier runs: %s", task_id, exc)
            return []
