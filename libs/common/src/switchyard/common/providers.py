"""Which providers the executors can reach, shared through JetStream KV.

Executors hold the provider keys and announce what they can call; the router and the gateway read the
announcements (they never see a key). A provider nobody announced is not routed to.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from switchyard.common import subjects


class ProviderStatus(BaseModel):
    provider: str = Field(pattern=r"^[a-z0-9_-]+$")
    available: bool = True
    endpoint: str = Field(default="", description="where calls go (host only, never a key)")
    announced_by: str = ""
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


async def providers_bucket(js: JetStreamContext) -> KeyValue:
    try:
        return await js.key_value(subjects.KV_PROVIDERS)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=subjects.KV_PROVIDERS, history=1)


async def announce(kv: KeyValue, status: ProviderStatus) -> None:
    await kv.put(status.provider, status.model_dump_json().encode())


async def read_all(kv: KeyValue) -> dict[str, ProviderStatus]:
    try:
        keys = await kv.keys()
    except NoKeysError:
        return {}
    out: dict[str, ProviderStatus] = {}
    for key in keys:
        entry = await kv.get(key)
        if entry.value:
            status = ProviderStatus.model_validate_json(entry.value)
            out[status.provider] = status
    return out


def available(statuses: dict[str, ProviderStatus]) -> set[str]:
    return {name for name, s in statuses.items() if s.available}
