"""Embedding results on a real nats-server: inline up to the limit, in the object store above it, read
back by `vectors.fetch` (a pull consumer over the object's chunks) and by nats-py's own object store, and
what a reader is told when the object is gone or its bytes do not match."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import nats
import numpy as np
import pytest
from nats.js import JetStreamContext

from switchyard.cli.processes import NatsServer
from switchyard.common import vectors
from switchyard.common.events import EmbeddingResult

pytestmark = pytest.mark.integration


def rows(count: int, dimensions: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).standard_normal((count, dimensions)).astype("<f4").tobytes()


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await vectors.open_store(js, ttl_s=600, max_bytes=64 * 1024 * 1024, replicas=1)
    yield js
    await nc.close()


async def test_small_results_travel_inline_and_large_ones_through_the_store(js: JetStreamContext) -> None:
    small = rows(42, 1536)  # 258,048 bytes: under the 256 KiB inline limit
    inline = await vectors.keep(js, small, count=42, dimensions=1536, name="acme.t-small")
    assert inline.data is not None and inline.object is None
    assert await vectors.fetch(js, inline) == small

    large = rows(1000, 1536)  # LangChain's default batch: 6.1 MB
    stored = await vectors.keep(js, large, count=1000, dimensions=1536, name="acme.t-large")
    assert (stored.data, stored.object, stored.sha256) == (
        None,
        "acme.t-large",
        hashlib.sha256(large).hexdigest(),
    )
    assert len(stored.model_dump_json()) < 300, "the event carries the name, not the numbers"
    assert await vectors.fetch(js, stored) == large
    # another system reads it with its NATS client's object store
    outside = await (await js.object_store(vectors.BUCKET)).get("acme.t-large")
    assert outside.data == large

    await vectors.discard(js, stored)
    with pytest.raises(vectors.VectorsGone):
        await vectors.fetch(js, stored)
    await vectors.discard(js, stored)  # already gone: nothing to do


async def test_a_redelivered_run_overwrites_its_own_object(js: JetStreamContext) -> None:
    name = vectors.object_name("acme", "t-again")
    first = await vectors.keep(js, rows(300, 384, seed=1), count=300, dimensions=384, name=name)
    second_raw = rows(300, 384, seed=2)
    second = await vectors.keep(js, second_raw, count=300, dimensions=384, name=name)
    assert await vectors.fetch(js, second) == second_raw
    with pytest.raises(vectors.VectorsCorrupt, match="sha256"):
        await vectors.fetch(js, first)  # the name now holds the second run's vectors


async def test_a_missing_object_or_one_whose_digest_differs_is_unreadable(js: JetStreamContext) -> None:
    never = EmbeddingResult(count=2, dimensions=384, sha256="0" * 64, object="acme.never-kept")
    with pytest.raises(vectors.VectorsGone, match="never kept"):
        await vectors.fetch(js, never)
    raw = rows(200, 384)
    kept = await vectors.keep(js, raw, count=200, dimensions=384, name="acme.t-digest")
    wrong = kept.model_copy(update={"sha256": hashlib.sha256(b"other").hexdigest()})
    with pytest.raises(vectors.VectorsCorrupt, match="sha256"):
        await vectors.fetch(js, wrong)
    shorter = kept.model_copy(update={"count": 199})
    with pytest.raises(vectors.VectorsCorrupt, match="not 199 x 384"):
        await vectors.fetch(js, shorter)


async def test_an_expired_object_is_gone(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await vectors.open_store(js, ttl_s=1, max_bytes=8 * 1024 * 1024, replicas=1)
        kept = await vectors.keep(js, rows(200, 384), count=200, dimensions=384, name="acme.t-expiring")
        assert len(await vectors.fetch(js, kept)) == 200 * 384 * 4
        await asyncio.sleep(1.6)
        with pytest.raises(vectors.VectorsGone):
            await vectors.fetch(js, kept)
    finally:
        await nc.close()


async def test_a_full_bucket_refuses_the_put(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await vectors.open_store(js, ttl_s=600, max_bytes=1024 * 1024, replicas=1)
        fits = await vectors.keep(js, rows(400, 384), count=400, dimensions=384, name="acme.t-fits")
        with pytest.raises(vectors.VectorsNotKept, match="could not be put"):
            await vectors.keep(js, rows(400, 384), count=400, dimensions=384, name="acme.t-full")
        assert len(await vectors.fetch(js, fits)) == 400 * 384 * 4  # the first is intact
        # the refused put left no chunks behind: once the first is deleted, the second fits
        await vectors.discard(js, fits)
        await vectors.keep(js, rows(400, 384), count=400, dimensions=384, name="acme.t-full")
    finally:
        await nc.close()


async def test_the_bucket_is_reconfigured_by_a_later_start(js: JetStreamContext) -> None:
    await vectors.open_store(js, ttl_s=300, max_bytes=2 * 1024 * 1024 * 1024, replicas=1)
    status = await (await js.object_store(vectors.BUCKET)).status()
    assert status.ttl == 300 and status.stream_info.config.max_bytes == 2 * 1024 * 1024 * 1024


async def test_the_largest_result_is_read_well_under_a_second(js: JetStreamContext) -> None:
    """2,048 vectors of 3,072 numbers (OpenAI's largest request): 25,165,824 bytes."""
    raw = rows(2048, 3072)
    assert vectors.fits(2048, 3072)
    started = time.perf_counter()
    kept = await vectors.keep(js, raw, count=2048, dimensions=3072, name="acme.t-largest")
    put_s = time.perf_counter() - started
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        assert await vectors.fetch(js, kept) == raw
        timings.append(time.perf_counter() - started)
    print(
        f"\n25 MiB result: put {put_s * 1000:.0f} ms, fetch {sorted(timings)[1] * 1000:.0f} ms (median of 3)"
    )
    assert sorted(timings)[1] < 1.0


def test_object_names_are_safe_and_distinct() -> None:
    assert vectors.object_name("org_1", "0123abcd") == "org_1.0123abcd"
    odd = vectors.object_name("acme.corp", "job/42 x")
    assert odd.count(".") == 1 and all(c.isalnum() or c in "-_." for c in odd)
    assert odd != vectors.object_name("acme_corp", "job_42_x")
    EmbeddingResult(count=1, dimensions=1, sha256="0" * 64, object=odd)  # a valid name for the event


def test_a_result_holds_exactly_one_of_inline_data_and_an_object() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        EmbeddingResult(count=1, dimensions=1, sha256="0" * 64)
    with pytest.raises(ValueError, match="exactly one"):
        EmbeddingResult(count=1, dimensions=1, sha256="0" * 64, data="AAAAAA==", object="a.b")
