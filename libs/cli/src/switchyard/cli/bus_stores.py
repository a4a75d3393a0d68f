"""Every stream, KV bucket and object store of Switchyard, in one list, and their making by the operator.

`switchyard up` makes them all as `operator` before any service starts (its services run with
SWITCHYARD_BUS_PROVISIONED and only open them: provisioning.py); `switchyard bus provision` does the same
on another bus. Each configuration comes from the function or constants its service opens it with, and
the sizes and ages from the services' settings read from this environment, so a service finds what it
expects, and one whose settings differ says so at its start.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext, api

from switchyard.common import bus, outage_ride, provisioning, subjects
from switchyard.common import vectors as embedding_vectors
from switchyard.common.config import CommonSettings


@dataclass(frozen=True)
class Store:
    config: api.StreamConfig
    setting: str = ""  # the setting of its size (max_bytes), named when JetStream has no room for it


def stores() -> list[Store]:
    """The configurations of every stream and bucket the services open, from this environment's settings."""
    from switchyard.classifier import promotion
    from switchyard.executor import carried, tool_state
    from switchyard.executor.config import ExecutorSettings
    from switchyard.gateway import inflight
    from switchyard.gateway.access import changes
    from switchyard.gateway.app import LIMITS_KEEP_S, SPEND_KEEP_S
    from switchyard.gateway.batches import store as batches
    from switchyard.gateway.batches import vectors as batch_vectors
    from switchyard.gateway.config import GatewaySettings
    from switchyard.gateway.files import store as files
    from switchyard.gateway.stored_responses import store as responses
    from switchyard.gateway.taskapi import store as tasks

    replicas = CommonSettings().stream_replicas
    gateway, executor = GatewaySettings(), ExecutorSettings()

    def kv(bucket: str, *, ttl_s: float | None = None, history: int = 1) -> Store:
        return Store(provisioning.kv_config(bucket, history=history, ttl_s=ttl_s, replicas=replicas))

    out = [Store(config) for config in bus.stream_configs(replicas)]
    out += [
        kv(subjects.KV_TENANTS),
        kv(subjects.KV_PROVIDERS),
        kv(subjects.KV_BUDGETS),
        kv(subjects.KV_BUDGET_LIMITS),
        kv(subjects.KV_ROUTING_STATS),
        kv(subjects.KV_BREAKERS),
        kv(subjects.KV_RATE_LIMITS),
        kv(subjects.KV_TOOL_STATE, ttl_s=tool_state.KEEP_S),
        kv(subjects.KV_CARRIED, ttl_s=carried.KEEP_S),
        kv(subjects.KV_OUTAGE_RETRIES, ttl_s=outage_ride.KEEP_S),
        kv(subjects.KV_GATEWAY_CONTROL, history=5),
        kv(subjects.KV_GATEWAY_LIMITS, ttl_s=LIMITS_KEEP_S),
        kv(subjects.KV_SPEND, ttl_s=SPEND_KEEP_S),
        kv(subjects.KV_SPEND_TOTAL),
        kv(subjects.KV_AUTH_CHANGES, ttl_s=changes.KEEP_S),
        kv(subjects.KV_GATEWAYS, ttl_s=inflight.KEEP_S),
        kv(subjects.KV_TASKS, ttl_s=tasks.KEEP_S),
        kv(subjects.KV_BATCHES, ttl_s=batches.KEEP_S),
        kv(subjects.KV_CACHE, ttl_s=gateway.cache_max_ttl_s),
        Store(files.index_config(replicas=replicas)),
        Store(promotion.heads_config(replicas=replicas)),
        Store(promotion.replicas_config(replicas=replicas)),
        Store(
            files.bucket_config(max_bytes=gateway.files_bucket_bytes, replicas=replicas), files.BUCKET_SETTING
        ),
        Store(
            provisioning.object_config(
                batch_vectors.BUCKET,
                description=batch_vectors.DESCRIPTION,
                max_bytes=gateway.batch_vectors_bytes,
                replicas=replicas,
                ttl_s=batch_vectors.KEEP_S,
            ),
            "SWITCHYARD_BATCH_VECTORS_BYTES",
        ),
        Store(
            provisioning.object_config(
                embedding_vectors.BUCKET,
                description=embedding_vectors.DESCRIPTION,
                max_bytes=executor.embedding_store_max_bytes,
                replicas=replicas,
                ttl_s=executor.embedding_store_ttl_s,
            ),
            "SWITCHYARD_EMBEDDING_STORE_MAX_BYTES",
        ),
        Store(promotion.objects_config(replicas=replicas)),
    ]
    if gateway.responses_store:
        config = responses.responses_config(
            keep_s=gateway.responses_keep_s, max_bytes=gateway.responses_bucket_bytes, replicas=replicas
        )
        out.append(Store(config, responses.SETTING))
    return out


async def provision(js: JetStreamContext, wanted: list[Store] | None = None) -> list[str]:
    """Creates every store, or brings an existing one to its configuration; their stream names. A store
    JetStream has no room for is a ConfigurationError naming its size's setting."""
    made = []
    for store in stores() if wanted is None else wanted:
        await provisioning.ensure(js, store.config, setting=store.setting)
        made.append(store.config.name or "")
    return made
