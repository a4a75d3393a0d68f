"""The stored responses' store and the conversations read from it, on a real nats-server: an answer whose
record the bus does not take (the bucket's stream gone, as much as the bucket full) is not stored and
still goes out; a conversation naming an item twice (a follow-up sending the previous response's items
again, a reference repeated) or an item id that is not a string is a 400, as OpenAI's; and a conversation
the bus could not carry (images of several stored responses, which `max_prompt_chars` does not count) is a
413, not a task the bus refuses; a large record is compressed and read off the event loop; a bucket
shrunk below what it holds on a restart says that it stores nothing until records expire."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import orjson
import pytest
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.gateway.errors import APIError, BusPayloadExceeded
from switchyard.gateway.stored_responses import chain
from switchyard.gateway.stored_responses.store import ResponseStore, StoredResponse, responses_bucket

pytestmark = pytest.mark.integration
TASK = "0" * 31


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


async def _store(js: JetStreamContext, *, max_value_bytes: int = 1 << 20) -> ResponseStore:
    return await responses_bucket(
        js, keep_s=60, max_bytes=8 << 20, replicas=1, max_value_bytes=max_value_bytes
    )


def _record(n: int, *, text: str = "hi", image: str | None = None) -> StoredResponse:
    """Stored response n: one user input item (with an image, if given) and one answer."""
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    if image is not None:
        content.append({"type": "input_image", "image_url": image})
    answer = {
        "id": f"msg_{TASK}{n}",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": f"answer {n}"}],
    }
    return StoredResponse(
        response={"id": f"resp_{TASK}{n}", "status": "completed", "output": [answer]},
        input=[{"id": f"msg_{TASK}{n}_in0", "type": "message", "role": "user", "content": content}],
    )


def _body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "auto", **fields})


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("switchyard_gateway_stored_responses_total", {"outcome": outcome}) or 0.0


async def test_a_record_the_bus_does_not_take_is_not_stored_rather_than_losing_the_answer(
    js: JetStreamContext,
) -> None:
    store = await _store(js)
    assert await store.put("acme", _record(1))
    await js.delete_stream(f"KV_{subjects.KV_RESPONSES}")  # an operator's mistake, a stream being moved
    refused = _count("refused")
    # was: NoStreamResponseError raised, which the non-streamed answer's request turned into a 503
    # "retry shortly" after the task had run and been billed (and a stream ended without its completion)
    assert await store.put("acme", _record(2)) is False
    assert _count("refused") == refused + 1


async def test_an_item_named_twice_or_an_id_that_is_not_a_string_is_refused(js: JetStreamContext) -> None:
    store = await _store(js)
    await store.put("acme", _record(1))
    previous = f"resp_{TASK}1"
    answer = _record(1).response["output"][0]
    ask = {"type": "message", "role": "user", "content": "and?"}
    cases = [
        # the previous response's answer sent again with it (by value, or by reference), as OpenAI refuses
        (_body(previous_response_id=previous, input=[answer, ask]), "input.0"),
        (
            _body(previous_response_id=previous, input=[{"type": "item_reference", "id": answer["id"]}]),
            "input.0",
        ),
        # one reference twice
        (_body(input=[{"type": "item_reference", "id": answer["id"]}] * 2), "input.1"),
        # two of the request's own items under one id
        (_body(input=[{**ask, "id": "mine"}, {**ask, "id": "mine"}]), "input.1"),
    ]
    for body, param in cases:
        with pytest.raises(APIError) as refused:
            await chain.load(store, "acme", body)
        assert (refused.value.status, refused.value.code, refused.value.param) == (
            400,
            "duplicate_item",
            param,
        )
        assert "Duplicate item found with id" in refused.value.message
    with pytest.raises(APIError) as odd:  # was stored as given: input_items then failed with a 500
        await chain.load(store, "acme", _body(input=[{**ask, "id": 5}]))
    assert (odd.value.status, odd.value.code, odd.value.param) == (400, "invalid_type", "input.0.id")


async def test_an_item_too_deep_to_be_stored_is_a_400_before_it_is_answered(js: JetStreamContext) -> None:
    """An item's field the task does not carry, nested 300 levels (orjson reads 1,024, writes ~254): it
    was answered, then storing it raised orjson's TypeError, a 500 for a task that had run."""
    store = await _store(js)
    deep = b'{"a":' * 300 + b"{}" + b"}" * 300
    items = b'[{"role":"user","content":"hi"},{"role":"user","content":"and?","notes":' + deep + b"}]"
    body = b'{"model":"auto","input":' + items + b"}"
    talk = await chain.load(store, "acme", body)
    with pytest.raises(APIError) as refused:
        talk.parse(body, max_prompt_chars=1000)
    assert (refused.value.status, refused.value.code, refused.value.param) == (
        400,
        "nesting_too_deep",
        "input.1",
    )
    unkept = b'{"model":"auto","store":false,"input":' + items + b"}"  # not written again: nor in the task
    talk = await chain.load(store, "acme", unkept)
    assert len(talk.parse(unkept, max_prompt_chars=1000).messages) == 2
    await store.put("acme", _record(1))  # a follow-up's items are measured against the bus: written too
    follow = b'{"model":"auto","store":false,"previous_response_id":"resp_' + TASK.encode() + b'1","input":'
    talk = await chain.load(store, "acme", follow + items + b"}")
    with pytest.raises(APIError) as refused:
        talk.parse(follow + items + b"}", max_prompt_chars=1000)
    assert (refused.value.code, refused.value.param) == ("nesting_too_deep", "input.1")


async def test_a_conversation_larger_than_a_bus_message_is_413(js: JetStreamContext) -> None:
    store = await _store(js, max_value_bytes=64 * 1024)
    image = "data:image/png;base64," + "A" * 40_000  # text limits do not count images
    for n in (1, 2):
        assert await store.put("acme", _record(n, image=image))  # each compresses well under the limit
    refs = [{"type": "item_reference", "id": f"msg_{TASK}{n}_in0"} for n in (1, 2)]
    talk = await chain.load(store, "acme", _body(input=refs))
    with pytest.raises(BusPayloadExceeded) as large:
        talk.parse(_body(input=refs), max_prompt_chars=1000)
    assert (large.value.status, large.value.code) == (413, "bus_max_payload_exceeded")
    one = await chain.load(store, "acme", _body(input=refs[:1]))  # one image's conversation fits
    assert len(one.parse(_body(input=refs[:1]), max_prompt_chars=1000).messages) == 1


async def test_a_follow_up_that_leaves_the_previous_function_calls_unanswered_is_refused(
    js: JetStreamContext,
) -> None:
    store = await _store(js)
    call = {
        "id": f"fc_{TASK}1_0",
        "type": "function_call",
        "call_id": "call_1",
        "name": "f",
        "arguments": "{}",
    }
    record = _record(1)
    await store.put(
        "acme", StoredResponse(response={**record.response, "output": [call]}, input=record.input)
    )
    # OpenAI's 400 (providers refuse a tool call with no result after it): it went to the model
    body = _body(previous_response_id=f"resp_{TASK}1", input="never mind, just say hi")
    talk = await chain.load(store, "acme", body)
    with pytest.raises(APIError) as refused:
        talk.parse(body, max_prompt_chars=1000)
    assert (refused.value.status, refused.value.code, refused.value.param) == (400, "invalid_value", "input")
    assert refused.value.message.startswith("No tool output found for function call call_1.")
    answered = _body(
        previous_response_id=f"resp_{TASK}1",
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "ok"}],
    )
    talk = await chain.load(store, "acme", answered)
    assert [m.role for m in talk.parse(answered, max_prompt_chars=1000).messages] == [
        "user",
        "assistant",
        "tool",
    ]


async def test_a_large_record_is_compressed_and_read_off_the_event_loop(js: JetStreamContext) -> None:
    store = await _store(js, max_value_bytes=6 << 20)
    image = "data:image/png;base64," + base64.b64encode(os.urandom(3 << 20)).decode()  # incompressible
    record = _record(1, image=image)
    started = time.perf_counter()
    record.to_bytes()
    inline = time.perf_counter() - started  # what compressing it costs the loop when done on it
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.002)
            gaps.append(time.perf_counter() - last)
            last = time.perf_counter()

    ticking = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    assert await store.put("acme", record)
    read = await store.get("acme", record.id)
    ticking.cancel()
    assert read is not None and read.input == record.input
    # was: the loop (every request of the replica) waited the whole compression, ~0.2-0.4 s here
    assert max(gaps) < inline / 2, (max(gaps), inline)


async def test_a_bucket_shrunk_below_what_it_holds_says_it_stores_nothing_until_records_expire(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    store = await responses_bucket(js, keep_s=60, max_bytes=256 * 1024, replicas=1, max_value_bytes=1 << 20)
    for n in range(1, 10):
        assert await store.put("acme", _record(n, text=os.urandom(4000).hex()))
    with caplog.at_level(logging.WARNING):  # a restart with a smaller SWITCHYARD_RESPONSES_BUCKET_BYTES
        store = await responses_bucket(
            js, keep_s=60, max_bytes=16 * 1024, replicas=1, max_value_bytes=1 << 20
        )
    assert any("SWITCHYARD_RESPONSES_BUCKET_BYTES" in r.getMessage() for r in caplog.records)  # was silent
    assert await store.put("acme", _record(0)) is False  # a new response
    assert await store.get("acme", f"resp_{TASK}1") is not None  # kept until it expires


async def test_an_organisation_fills_its_share_of_the_bucket_not_the_others(js: JetStreamContext) -> None:
    records = [_record(n, text=base64.b64encode(os.urandom(6000)).decode()) for n in range(1, 10)]
    size = len(records[0].to_bytes())  # ~6 KB: nearly incompressible
    store = await responses_bucket(
        js, keep_s=60, max_bytes=12 * size, replicas=1, max_value_bytes=1 << 20, org_bytes=size * 5 // 2
    )
    over = _count("over_share")
    kept = [await store.put("greedy", record) for record in records]
    assert kept == [True, True] + [False] * 7  # was: 9 stored, most of the bucket one organisation's
    assert _count("over_share") == over + 7
    assert await store.put("modest", records[0])  # another organisation's share is its own
    assert await store.get("greedy", f"resp_{TASK}1") is not None


async def test_records_a_full_bucket_refuses_do_not_use_up_the_share(js: JetStreamContext) -> None:
    records = [_record(n, text=base64.b64encode(os.urandom(6000)).decode()) for n in range(1, 10)]
    size = len(records[0].to_bytes())
    store = await responses_bucket(
        js, keep_s=60, max_bytes=3 * size, replicas=1, max_value_bytes=1 << 20, org_bytes=4 * size
    )
    held = [r for r in records if await store.put("filler", r)]
    assert [await store.put("late", r) for r in records] == [False] * 9  # the bucket is full
    for record in held:
        assert await store.delete("filler", record.id)
    assert await store.put("late", records[0])  # its share was given back each time


async def test_ids_not_of_a_response_read_nothing_and_log_nothing(
    js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """The bucket holds an organisation's conversations and its usage count beside its responses: `GET` or
    `DELETE /v1/responses/{id}` with a conversation's id (or the usage record's name) is a plain 404. It
    was read and failed to decode, logging 'stored response ... cannot be read' at error (corruption, to an
    operator) with the client's id as given, NUL characters and all, at every call."""
    from switchyard.gateway.conversations.store import ConversationStore, StoredConversation

    store = await _store(js)
    conversation = StoredConversation("conv_" + "1" * 32)
    await ConversationStore(store).create("acme", conversation)
    assert await store.count("acme", 10)  # the usage record, "\x00usage"
    with caplog.at_level(logging.ERROR):
        for name in (conversation.id, "\x00usage"):
            assert await store.get("acme", name) is None
            assert not await store.delete("acme", name)
    assert not caplog.records
    assert await ConversationStore(store).get("acme", conversation.id) == conversation
