"""A file's description (KV `switchyard-files-index`) that the server rewrote on a client's behalf is refused
like the files' objects (real nats-server 2.15 under the embedded run's permissions): the executor's user,
which may only read nothing of the files, has the server store a description of its own under a tenant's
file key (another purpose, size and expiry) and under a key of its own making. Before, the gateway took
both as written: the file changed purpose and size, and the tenant's listing showed a file nobody
uploaded."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from switchyard.common import subjects
from switchyard.gateway.files.errors import FileUnreadable
from switchyard.gateway.files.store import file_key
from tests.integration.gateway.test_forged_objects import stored
from tests.support.guarded_bus import GuardedBus, forge

pytestmark = pytest.mark.integration

CONTENT = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'


async def test_a_forged_description_is_refused_and_listed_by_no_one(
    guarded: GuardedBus, guarded_clients: dict[str, Client]
) -> None:
    files, file_id = await stored(guarded, "acme", CONTENT)
    real = await files.get(tenant_id="acme", file_id=file_id)
    forged = real.model_copy(update={"bytes": 1, "purpose": "batch_output", "filename": "mallory.jsonl"})
    executor = guarded_clients["executor"]
    await forge(executor, subjects.KV_FILES, file_key("acme", file_id), forged.model_dump_json().encode())
    planted = forged.model_copy(update={"id": "file-planted"})
    await forge(
        executor, subjects.KV_FILES, file_key("acme", "file-planted"), planted.model_dump_json().encode()
    )

    with pytest.raises(FileUnreadable, match="description was overwritten"):
        await files.get(tenant_id="acme", file_id=file_id)
    listed, _ = await files.list(tenant_id="acme", purpose=None, limit=100, after=None, order="asc")
    assert [f.id for f in listed] == [], listed  # neither the forged description nor the planted file
