"""What a large body holds the gateway's event loop for, every other request of the replica waiting: the
largest bodies the limits take (100,000 turns, tool calls and results) held it 0.5-1.3 s (bench/loop_lag.py):
their parse, the collections of what it allocated, and the task written three times (two checks against
the bus's limit and its publishing). Now a large body is parsed on a worker thread, what a read allocated
goes to the oldest generation at once (no young collection walks it, nor sets off a full one), and the
task is written once, on a thread, and published as written."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from switchyard.common.envelope import decode, encode, written
from switchyard.common.events import TaskSubmitted
from switchyard.gateway import bounds, completions, responses
from switchyard.gateway.conversations import items as conversation_items
from switchyard.gateway.conversations import views as conversations
from switchyard.gateway.tasks import TaskClient
from switchyard.gateway.tenants import Principal
from tests.support.loop_gaps import longest_gap

pytestmark = pytest.mark.unit

PRINCIPAL = Principal(tenant_id="acme", api_key_id="k1", user_id="u1", key_prefix="sy_test")
CALLS = 20_000


def _calls_and_outputs(n: int) -> bytes:
    """A Responses conversation of `n` function calls, each followed by its output (the dearest shape to
    read per item)."""
    items: list[dict[str, Any]] = [{"role": "user", "content": "a"}]
    for k in range(n):
        items.append({"type": "function_call", "call_id": f"c{k}", "name": "f", "arguments": "{}"})
        items.append({"type": "function_call_output", "call_id": f"c{k}", "output": "a"})
    return orjson.dumps({"model": "auto", "input": items})


def test_a_large_body_is_parsed_while_the_loop_goes_on() -> None:
    body = _calls_and_outputs(CALLS)
    assert len(body) > bounds.READ_INLINE_BYTES
    parse = functools.partial(responses.parse_request, body, max_prompt_chars=10**9)
    _, gap, took = asyncio.run(longest_gap(bounds.read_off_loop(parse, size=len(body))))
    # inline, the loop waited the whole parse (gap ~ took); on a thread, the interpreter's switches
    assert gap < took / 2, (gap, took)
    small = orjson.dumps({"model": "auto", "input": "a"})
    parsed = asyncio.run(
        bounds.read_off_loop(
            functools.partial(responses.parse_request, small, max_prompt_chars=9), size=len(small)
        )
    )
    assert parsed.messages[0].content == "a"  # a small body is read where it is


def test_what_a_read_allocated_is_not_walked_by_the_young_collections() -> None:
    gc.collect()
    collections: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    body = _calls_and_outputs(CALLS)
    parsed = bounds.reads(responses.parse_request)(body, max_prompt_chars=10**9)
    gc.callbacks.append(seen)
    try:
        assert len(gc.get_objects(generation=0)) < 1_000  # it was the read's hundreds of thousands
        _ = [{} for _ in range(2_000)]  # the loop's next allocations set off young collections only
    finally:
        gc.callbacks.remove(seen)
    assert collections and 2 not in collections, collections
    assert len(parsed.messages) == 2 * CALLS + 1


def test_a_task_is_written_once_and_published_as_written() -> None:
    body = _calls_and_outputs(CALLS)
    parsed = completions.build_task(
        responses.parse_request(body, max_prompt_chars=10**9), PRINCIPAL, priority=None
    )
    task: TaskSubmitted = parsed
    client = TaskClient(SimpleNamespace(max_payload=8 << 20), publisher=None)  # type: ignore[arg-type]
    asyncio.run(client.check_fits_off_loop(task, size=len(body)))
    kept = client._written[id(task)]
    assert kept == written(task, within=1) == orjson.dumps(task.model_dump(mode="json", exclude_none=True))
    client.check_fits(task)  # `run`'s check: not written again
    assert client._written[id(task)] is kept
    _, as_written = encode(task, source="t", event_id="e1", data=kept)
    _, dumped = encode(task, source="t", event_id="e1")
    assert decode(as_written)[1] == decode(dumped)[1] == task
    del task, parsed
    gc.collect()
    assert not client._written  # let go with its task (one never published: refused at admission)


def _conversation_items(parts: int) -> list[dict[str, Any]]:
    """The most a Conversations API call adds (20 items), holding `parts` content parts each."""
    content = [{"type": "input_text", "text": "a"} for _ in range(parts)]
    return [{"type": "message", "role": "user", "content": content} for _ in range(20)]


def test_a_large_conversations_body_is_read_off_the_loop() -> None:
    """The Conversations API's create and items-add bodies are read (parsed, their items checked) on a worker
    thread when large, as the other faces' are: before, their read (~0.1 s for a body of as many parts as a
    conversation may hold) held every request of the replica. Which thread reads is asserted rather than
    the loop's gaps: on a shared machine reads this short measure too unevenly."""
    items = _conversation_items(4_900)
    body = orjson.dumps({"items": items, "metadata": {"topic": "a"}})
    assert len(body) > bounds.READ_INLINE_BYTES

    async def read_by(read: Any, size: bytes) -> tuple[bool, Any]:
        loop_thread = threading.get_ident()
        return await conversations.off_loop(lambda: (threading.get_ident() != loop_thread, read()), size)

    off, created = asyncio.run(read_by(functools.partial(conversations.created, body), body))
    assert off and len(created.items) == 20 and created.metadata == {"topic": "a"}
    added = functools.partial(conversation_items.added, items, held={"msg_1"})
    off, kept = asyncio.run(read_by(added, body))
    assert off and len(kept) == 20
    small = orjson.dumps({"items": _conversation_items(1)})
    off, _ = asyncio.run(read_by(functools.partial(conversations.created, small), small))
    assert not off  # a small body is read where it is
