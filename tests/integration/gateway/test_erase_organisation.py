"""Erasing an organisation's stored responses and conversations, on a real nats-server: records of two
organisations, of both key layouts (the current one, under the organisation's prefix, and the one written
before it, a hash alone, still read and changed where it is); erasing one leaves none of its records, not
even a delete marker, and every record of the other; a second run finds nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext

from switchyard.cli.processes import NatsServer
from switchyard.common import kv
from switchyard.gateway.conversations.store import ConversationStore, StoredConversation, new_id
from switchyard.gateway.stored_responses.erase import erase_organisation
from switchyard.gateway.stored_responses.store import (
    ResponseStore,
    StoredResponse,
    org_prefix,
    record_key,
    responses_bucket,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


def _response(n: int, tenant: str) -> StoredResponse:
    return StoredResponse(
        response={"id": f"resp_{tenant}_{n}", "status": "completed", "output": []},
        input=[{"id": f"msg_{n}", "type": "message", "role": "user", "content": "private words"}],
    )


def _message(item_id: str) -> dict[str, str]:
    return {"id": item_id, "type": "message", "role": "user", "content": "hello"}


async def _fill(store: ResponseStore, tenant: str) -> dict[str, list[str]]:
    """Two responses and a conversation of each layout, one response deleted (a marker): their ids."""
    conversations = ConversationStore(store)
    new = [_response(n, tenant) for n in range(3)]
    for record in new:
        assert await store.put(tenant, record)
    assert await store.delete(tenant, new[2].id)
    old = [_response(n, tenant) for n in range(10, 12)]
    for record in old:  # as the gateway wrote them before the prefix
        await store.bucket.put(kv.tenant_key(tenant, record.id), record.to_bytes())
    conversation = StoredConversation(new_id(), items=(_message("msg_a"),))
    await conversations.create(tenant, conversation)
    old_conversation = StoredConversation(new_id(), items=(_message("msg_b"),))
    await store.bucket.put(kv.tenant_key(tenant, old_conversation.id), old_conversation.to_bytes())
    return {
        "responses": [r.id for r in (*new[:2], *old)],
        "conversations": [conversation.id, old_conversation.id],
    }


async def test_erasing_one_organisation_leaves_none_of_its_records_and_all_of_the_others(
    js: JetStreamContext,
) -> None:
    store = await responses_bucket(
        js, keep_s=600, max_bytes=8 << 20, replicas=1, max_value_bytes=1 << 20, org_bytes=1 << 20
    )
    conversations = ConversationStore(store)
    acme, globex = await _fill(store, "acme"), await _fill(store, "globex")
    # the earlier layout is read, and a conversation of it changed where it is (compare-and-set kept)
    old_response, old_conversation = acme["responses"][-1], acme["conversations"][1]
    assert (await store.get("acme", old_response)) is not None
    changed = await conversations.change("acme", old_conversation, lambda c: c.with_items([_message("m2")]))
    assert changed is not None and len(changed.items) == 2
    assert await kv.read(store.bucket, record_key("acme", old_conversation)) == (None, None)
    assert await store.get("globex", old_response) is None  # another organisation's id finds nothing

    erased = await erase_organisation(store, "acme")

    # 4 responses, 2 conversations; the deleted response's marker and the usage record
    assert erased.as_dict() == {"stored_responses": 4, "conversations": 2, "other_keys": 2}
    for response_id in acme["responses"]:
        assert await store.get("acme", response_id) is None
    for conversation_id in acme["conversations"]:
        assert await conversations.get("acme", conversation_id) is None
    assert await kv.keys(store.bucket, f"{org_prefix('acme')}.") == []
    left = set(await kv.keys(store.bucket))
    gone = {kv.tenant_key("acme", name) for name in (*acme["responses"], *acme["conversations"])}
    assert not left & gone
    for response_id in globex["responses"]:
        assert await store.get("globex", response_id) is not None
    for conversation_id in globex["conversations"]:
        assert await conversations.get("globex", conversation_id) is not None
    assert await store.count("globex", 1)  # its usage record still there (and counting)

    again = await erase_organisation(store, "acme")
    assert again.as_dict() == {"stored_responses": 0, "conversations": 0, "other_keys": 0}
