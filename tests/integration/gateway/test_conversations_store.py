"""Conversations kept in the stored responses' bucket, on a real nats-server: scoped to their organisation;
two replicas appending turns to one conversation at once lose none and add none twice; a turn whose
conversation cannot take it (over the organisation's share) still answers; and a Responses request's
`conversation` is its items before the request's own, appended to once the answer is whole. Erasing an
organisation purges its responses and conversations of both key layouts (the current one under its
prefix, and the one before it, still read and changed where it is) and nothing of another's."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import zlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import nats
import orjson
import pytest
from nats.js import JetStreamContext

from switchyard.cli.processes import NatsServer
from switchyard.common import kv
from switchyard.gateway.conversations import turns
from switchyard.gateway.conversations.store import (
    ConversationNotFound,
    ConversationStore,
    ConversationTooLarge,
    OverShare,
    StoredConversation,
    new_id,
)
from switchyard.gateway.errors import APIError
from switchyard.gateway.stored_responses import chain
from switchyard.gateway.stored_responses.erase import erase_organisation
from switchyard.gateway.stored_responses.store import (
    ResponseStore,
    StoredResponse,
    org_prefix,
    record_key,
    responses_bucket,
)
from tests.support.loop_gaps import longest_gap

pytestmark = pytest.mark.integration


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


async def _responses(js: JetStreamContext, **limits: Any) -> ResponseStore:
    return await responses_bucket(
        js,
        keep_s=60,
        max_bytes=8 << 20,
        replicas=1,
        max_value_bytes=limits.pop("max_value_bytes", 1 << 20),
        **limits,
    )


def _message(item_id: str, text: str, role: str = "user") -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"id": item_id, "type": "message", "role": role, "content": [{"type": kind, "text": text}]}


async def _conversation(store: ConversationStore, tenant_id: str, *items: dict[str, Any]) -> str:
    conversation = StoredConversation(new_id(), metadata={"topic": "demo"}, items=items)
    await store.create(tenant_id, conversation)
    return conversation.id


async def test_a_conversation_is_its_organisations_alone(js: JetStreamContext) -> None:
    store = ConversationStore(await _responses(js))
    conversation_id = await _conversation(store, "acme", _message("msg_1", "hi"))
    await turns.append(store, "acme", conversation_id, [_message("msg_2", "more")])
    # records of up to a bus message are not held in the process after their write (kv.update's cache of
    # last writes keeps 4096 per bucket: gigabytes of conversations)
    assert record_key("acme", conversation_id) not in kv._KNOWN.get(store.responses.bucket, {})
    held = await store.get("acme", conversation_id)
    assert held is not None and held.metadata == {"topic": "demo"}
    assert held.items == (_message("msg_1", "hi"), _message("msg_2", "more"))
    assert await store.get("globex", conversation_id) is None
    assert (
        await store.change("globex", conversation_id, lambda c: c.with_items([_message("m2", "x")])) is None
    )
    assert not await store.delete("globex", conversation_id)
    assert await store.delete("acme", conversation_id)
    assert await store.get("acme", conversation_id) is None


async def test_two_replicas_appending_at_once_lose_no_turn_and_add_none_twice(
    nats_server: NatsServer,
) -> None:
    # two connections and two bucket objects: two gateway replicas, whose writes only the bus orders
    connections = [await nats.connect(nats_server.url) for _ in range(2)]
    try:
        stores = [ConversationStore(await _responses(nc.jetstream())) for nc in connections]
        conversation_id = await _conversation(stores[0], "acme")

        async def turn(replica: int, n: int) -> None:
            items = [
                _message(f"msg_{replica}_{n}_in0", f"q{n}"),
                _message(f"msg_{replica}_{n}", "a", "assistant"),
            ]
            await turns.append(stores[replica], "acme", conversation_id, items)

        await asyncio.gather(*(turn(replica, n) for n in range(12) for replica in (0, 1)))
        await turns.append(stores[1], "acme", conversation_id, [_message("msg_0_0_in0", "again")])  # a retry
        held = await stores[0].get("acme", conversation_id)
        assert held is not None
        ids = [item["id"] for item in held.items]
        assert len(ids) == len(set(ids)) == 48
        for replica in (0, 1):  # each turn whole and in its order: its question, then its answer
            for n in range(12):
                at = ids.index(f"msg_{replica}_{n}_in0")
                assert ids[at + 1] == f"msg_{replica}_{n}"
    finally:
        for nc in connections:
            await nc.close()


async def test_a_conversation_over_its_bounds_is_refused_with_its_reason(js: JetStreamContext) -> None:
    small = ConversationStore(await _responses(js, max_value_bytes=2048))
    noise = base64.b64encode(os.urandom(3000)).decode()  # ~3 KB compressed
    with pytest.raises(ConversationTooLarge) as large:
        await small.create("acme", StoredConversation(new_id(), items=(_message("m", noise),)))
    assert (large.value.status, large.value.code) == (413, "conversation_too_large")
    store = ConversationStore(await _responses(js, org_bytes=4096))
    conversation_id = await _conversation(store, "acme")
    big = [_message(f"m{n}", base64.b64encode(os.urandom(3000)).decode()) for n in range(3)]
    with pytest.raises(OverShare) as over:
        await store.change("acme", conversation_id, lambda c: c.with_items(big), adding=big)
    assert (over.value.status, over.value.code) == (400, "conversation_storage_exceeded")
    # a response's turn that does not fit still answers: nothing is raised, the conversation unchanged
    await turns.append(store, "acme", conversation_id, big)
    held = await store.get("acme", conversation_id)
    assert held is not None and held.items == ()


async def test_a_large_turn_is_counted_and_kept_off_the_event_loop(js: JetStreamContext) -> None:
    """A turn of a few MB (images) is compressed to count it against the organisation's share: on the event
    loop, every other request of the replica waited that long (~0.4 s for a 7.7 MB image here), though the
    record itself was already compressed on a thread."""
    store = ConversationStore(await _responses(js, max_value_bytes=6 << 20, org_bytes=64 << 20))
    conversation_id = await _conversation(store, "acme")
    turn = [_message("msg_big", base64.b64encode(os.urandom(3 << 20)).decode())]  # 4 MiB zlib cannot shrink
    started = time.perf_counter()
    zlib.compress(orjson.dumps(turn), 1)
    compress_s = time.perf_counter() - started
    _, gap, _ = await longest_gap(turns.append(store, "acme", conversation_id, turn))
    assert gap < compress_s / 2, (gap, compress_s)
    held = await store.get("acme", conversation_id)
    assert held is not None and [i["id"] for i in held.items] == ["msg_big"]


def _body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "auto", **fields})


async def test_a_responses_conversation_is_its_items_first_and_takes_the_turn(js: JetStreamContext) -> None:
    responses = await _responses(js)
    store = ConversationStore(responses)
    conversation_id = await _conversation(
        store, "acme", _message("msg_a", "My name is Ada."), _message("msg_b", "Hello Ada.", "assistant")
    )
    body = _body(input="What is my name?", conversation={"id": conversation_id}, store=False)
    talk = await chain.load(responses, "acme", body)
    parsed = talk.parse(body, max_prompt_chars=10_000)
    assert [(m.role, m.content) for m in parsed.messages] == [
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "What is my name?"),
    ]
    assert talk.fields()["conversation"] == {"id": conversation_id}
    answer = _message("msg_" + "1" * 32, "Ada.", "assistant") | {"status": "completed"}
    task: Any = SimpleNamespace(task_id="1" * 32)
    assert await talk.remember(task, {"status": "completed", "output": [answer]}) is False  # store: false
    held = await store.get("acme", conversation_id)
    assert held is not None
    assert [(i["id"], i["content"][0]["text"]) for i in held.items[2:]] == [
        ("msg_" + "1" * 32 + "_in0", "What is my name?"),
        ("msg_" + "1" * 32, "Ada."),
    ]
    assert held.items[2]["status"] == "completed" and held.items[2]["type"] == "message"
    failed = await chain.load(responses, "acme", _body(input="more", conversation=conversation_id))
    await failed.remember(task, {"status": "failed", "output": []})  # a failed answer adds nothing
    assert len((await store.get("acme", conversation_id) or held).items) == 4


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"previous_response_id": "resp_" + "0" * 32}, 400, "mutually_exclusive_parameters"),
        ({"conversation": "thread_1"}, 400, "invalid_conversation_id"),
        ({"conversation": {"name": "x"}}, 400, "invalid_type"),
        ({"conversation": "conv_" + "0" * 32}, 404, "conversation_not_found"),
    ],
)
async def test_a_conversation_named_wrongly_or_not_the_organisations_is_refused(
    js: JetStreamContext, fields: dict[str, Any], status: int, code: str
) -> None:
    responses = await _responses(js)
    theirs = await _conversation(ConversationStore(responses), "globex")
    named = {"conversation": theirs, **fields}
    with pytest.raises(APIError) as refused:
        await chain.load(responses, "acme", _body(input="hi", **named))
    assert (refused.value.status, refused.value.code) == (status, code)
    if code == "conversation_not_found":  # another organisation's: the same 404, saying no more
        with pytest.raises(ConversationNotFound) as other:
            await chain.load(responses, "acme", _body(input="hi", conversation=theirs))
        assert other.value.message == f"Conversation with id '{theirs}' not found."


def _response(n: int, tenant: str) -> StoredResponse:
    return StoredResponse(
        response={"id": f"resp_{tenant}_{n}", "status": "completed", "output": []},
        input=[{"id": f"msg_{n}", "type": "message", "role": "user", "content": "private words"}],
    )


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
    conversation = StoredConversation(new_id(), items=(_message("msg_a", "hello"),))
    await conversations.create(tenant, conversation)
    old_conversation = StoredConversation(new_id(), items=(_message("msg_b", "hello"),))
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
    changed = await conversations.change(
        "acme", old_conversation, lambda c: c.with_items([_message("m2", "more")])
    )
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
