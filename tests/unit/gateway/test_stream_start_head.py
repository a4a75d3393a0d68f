"""A stream's response that starts before its first output (`open_stream`'s `early_s`) says what is known
then: its head holds the chunks that named the model being called (the executor's start, a reset), its
headers name that model and say the response started early, and the rest of the stream does not repeat
them; a stream started at its first output says so, naming the model that gave it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchyard.common.events import TaskCompleted, TaskFailed
from switchyard.common.streaming import Chunk
from switchyard.gateway.outcomes import in_order, open_stream, stream_headers
from tests.unit.gateway.streams import calls_answer

pytestmark = pytest.mark.unit

START = Chunk(seq=0, model="openai/gpt-4o")
RESET = Chunk(seq=1, reset=True, model="anthropic/claude")
DONE = calls_answer(content="Paris")


class Client:
    def __init__(self, *items: Chunk | TaskCompleted, pause_after: int) -> None:
        self.items, self.pause_after = items, pause_after

    def stream(self, *_: Any, **__: Any) -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
        async def flow() -> AsyncIterator[Chunk | TaskCompleted | TaskFailed]:
            for n, item in enumerate(self.items):
                if n == self.pause_after:
                    await asyncio.sleep(0.3)  # the model thinking before its first output
                yield item

        return flow()


async def test_an_early_start_names_the_model_being_called_and_the_rest_follows_once() -> None:
    text = Chunk(seq=2, delta="Paris")
    client = Client(START, RESET, text, DONE, pause_after=2)
    head, rest = await open_stream(client, None, timeout_s=5, early_s=0.1)  # type: ignore[arg-type]
    assert head == [START, RESET]
    assert stream_headers(head) == {
        "x-switchyard-stream-start": "keep-alive",
        "x-switchyard-model": RESET.model,
    }
    seen = [item async for item in in_order(head, rest)]  # in order, no gap: nothing twice
    assert seen[:3] == [START, RESET, text] and isinstance(seen[3], TaskCompleted)


async def test_an_early_start_before_any_model_was_named_names_none() -> None:
    client = Client(START, Chunk(seq=1, delta="Paris"), DONE, pause_after=0)
    head, rest = await open_stream(client, None, timeout_s=5, early_s=0.1)  # type: ignore[arg-type]
    assert head == [] and stream_headers(head) == {"x-switchyard-stream-start": "keep-alive"}
    seen = [item async for item in rest]
    assert seen[0] == START


async def test_a_start_at_the_first_output_names_the_model_that_gave_it() -> None:
    text = Chunk(seq=1, delta="Paris")
    head, rest = await open_stream(  # type: ignore[arg-type]
        Client(START, text, DONE, pause_after=9), None, timeout_s=5, early_s=0.2
    )
    assert head == [START, text]
    assert stream_headers(head) == {"x-switchyard-stream-start": "output", "x-switchyard-model": START.model}
    await rest.aclose()  # type: ignore[attr-defined]
