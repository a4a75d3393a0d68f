"""The chunk that names the model being called before any output (`seq` 0, `model` alone) goes only to a
stream whose task asks for it (`ChatRequest.stream_start`, set by this release's gateways). A previous
gateway, which the documented roll order (executors first) runs beside this executor, and a bus client
take every chunk for output: for them the first chunk is the first output, naming the model, as before."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from switchyard.common import ids, subjects
from switchyard.common.streaming import Chunk, decode_chunk
from tests.integration.executor.conftest import Upstream
from tests.integration.executor.test_cancellations_replayed import route
from tests.integration.executor.test_cut_runs import connected, executor

pytestmark = pytest.mark.integration


async def _chunks(upstream: Upstream, stream_start: bool | None) -> list[Chunk]:
    task_id, chunks = ids.new_id(), []

    async def on_chunk(msg: Msg) -> None:
        chunks.append(decode_chunk(msg.data))

    async with connected(upstream.nats.url) as nc:
        await nc.subscribe(subjects.chunk_subject("acme", task_id), cb=on_chunk)
        async with executor(upstream.nats.url, upstream.env, upstream.tmp / f"start-{stream_start}.log"):
            result = await route(nc, task_id, "gpt-test", stream=True, stream_start=stream_start)
            await asyncio.wait_for(result, 15)
            await nc.flush()
    return chunks


async def test_only_a_stream_that_asks_for_it_gets_the_chunk_naming_the_model_called(
    upstream: Upstream,
) -> None:
    asked = await _chunks(upstream, True)
    first = asked[0]
    assert (first.seq, first.model, first.delta) == (0, "openai/gpt-test", None)
    assert asked[1].delta and asked[1].model is None  # the model was named already
    for stream_start in (None, False):  # a previous gateway, a bus client
        chunks = await _chunks(upstream, stream_start)
        first = chunks[0]
        assert first.seq == 0 and first.delta and first.model == "openai/gpt-test", chunks[:2]
        assert [c.seq for c in chunks] == list(range(len(chunks)))
        assert "".join(c.delta or "" for c in chunks) == "".join(c.delta or "" for c in asked)
