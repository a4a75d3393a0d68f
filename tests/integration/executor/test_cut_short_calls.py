"""A client that waits less than a model takes must not open that model's breaker for every tenant. The
gateway, router and executor run as processes on a real nats-server, the executor's breakers (in
JetStream KV) opening after 2 failures; the model answers after 3 s, within the executor's own bounds
(5 s a call, 6 s a task). Requests sent with `x-switchyard-timeout: 1` are cut after about a second,
each call recorded `cut_short`: the breaker stays closed, the router's statistics hold nothing against
the model, and a request that waits is answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import nats
import pytest

from switchyard.common import kv, subjects
from switchyard.common.events import ProviderCallRecorded
from switchyard.common.providers import BreakerRecord
from switchyard.router.health import ModelStats
from tests.integration.executor.slow_stack import Stack, slow_stack
from tests.integration.executor.tools_stack import classifier
from tests.integration.pipeline.test_acceptance import read_stream

__all__ = ["classifier"]  # the fixture, used by name

MODEL = "plain/slow-3"
QUESTION = [{"role": "user", "content": "What is the answer to everything?"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    executor = {
        "SWITCHYARD_TASK_DEADLINE_S": "6",
        "SWITCHYARD_CALL_TIMEOUT_S": "5",
        "SWITCHYARD_STREAM_MAX_S": "30",
        "SWITCHYARD_BREAKER_FAILURES": "2",
    }
    gateway = {"SWITCHYARD_TASK_TIMEOUT_S": "8", "SWITCHYARD_REQUEST_TIMEOUT_MAX_S": "20"}
    with slow_stack(
        tmp_path_factory.mktemp("cut-short"), ["slow-3"], executor=executor, gateway=gateway
    ) as s:
        yield s


async def _ask(http: httpx.AsyncClient, stack: Stack, *, stream: bool, wait_s: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.org.keys['member']}"}
    if wait_s is not None:
        headers["x-switchyard-timeout"] = wait_s
    body = {"model": MODEL, "stream": stream, "messages": QUESTION}
    response = await http.post("/v1/chat/completions", json=body, headers=headers)
    await response.aread()
    return response


@pytest.mark.usefixtures("classifier")
async def test_clients_that_wait_less_than_the_model_takes_leave_its_breaker_closed(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as http:
        for stream in (False, True, False):
            started = time.monotonic()
            cut = await _ask(http, stack, stream=stream, wait_s="1")
            assert time.monotonic() - started < 2.5
            assert "Hello! You said" not in cut.text, cut.text
        started = time.monotonic()
        answered = await _ask(http, stack, stream=False, wait_s=None)
    assert answered.status_code == 200, answered.text
    assert answered.json()["choices"][0]["message"]["content"].startswith("Hello! You said:")
    assert time.monotonic() - started > 3.0

    nc = await nats.connect(stack.nats_url)
    try:
        calls = [p for _, p in await read_stream(nc, subjects.PROVIDER_CALL)]
        outcomes = [c.outcome for c in calls if isinstance(c, ProviderCallRecorded)]
        assert outcomes == ["cut_short"] * 3 + ["ok"], outcomes
        breakers = await kv.bucket(nc.jetstream(), subjects.KV_BREAKERS)
        raw, _ = await kv.read(breakers, kv.safe_key("plain/slow-3"))
        record = BreakerRecord.model_validate_json(raw) if raw else BreakerRecord()
        assert record.state == "closed" and record.failures == 0, record
        # The router has folded the answer (it comes after the cuts): no failure among what it learnt.
        stats_bucket = await kv.bucket(nc.jetstream(), subjects.KV_ROUTING_STATS)
        deadline = time.monotonic() + 10
        stats = ModelStats(samples=0)
        while stats.samples < 1 and time.monotonic() < deadline:
            raw, _ = await kv.read(stats_bucket, kv.safe_key(MODEL))
            stats = ModelStats.model_validate_json(raw) if raw else stats
            await asyncio.sleep(0.1)
        assert stats.samples == 1 and stats.success == 1.0, stats
    finally:
        await nc.close()
