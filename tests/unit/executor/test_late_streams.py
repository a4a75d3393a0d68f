"""A stream whose call starts late in its task's deadline: what is left of the deadline bounds the call
until its first output, not every read of the stream after it; and a stream whose client waits long for
its first output still has its response begin within the executor's own time for a call. The OpenAI
stand-in serves the calls over real HTTP (`drip-<s>`: its words that far apart; `slow-<s>`: nothing, not
even its response's status, for that long)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import ProviderCall, Reply, TextDelta
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings
from switchyard.executor.providers.recording import CallRecord, RecordingProvider
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerGuard, BreakerState, LocalBreakers
from switchyard.executor.resilience.deadline import Deadline
from switchyard.executor.resilience.retry import RetryingProvider, RetryPolicy
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, str]]:
    fake = FakeOpenAI()
    with BackgroundServer(fake.app) as server:
        yield f"{server.url}/v1", fake.api_key


@pytest.fixture
async def adapter(upstream: tuple[str, str]) -> AsyncIterator[OpenAIProvider]:
    base_url, key = upstream
    provider = OpenAIProvider(OpenAISettings(api_key=key, base_url=base_url), timeout_s=5.0)
    yield provider
    await provider.aclose()


def late_call(
    adapter: OpenAIProvider, records: list[CallRecord], breakers: LocalBreakers, *, left_s: float
) -> RetryingProvider:
    """A candidate's call as the executor wraps it, started with `left_s` of the task's deadline left."""

    async def on_call(record: CallRecord) -> None:
        records.append(record)

    recorded = RecordingProvider(adapter, provider="openai", model="m", on_call=on_call)
    guarded = BreakerGuard(recorded, breakers, key="openai/m")
    return RetryingProvider(guarded, RetryPolicy(max_retries=0), deadline=Deadline.within(left_s))


def call(model: str) -> ProviderCall:
    return ProviderCall(model=model, messages=(ChatMessage(role="user", content="hi"),), timeout_s=5.0)


async def test_a_late_stream_pausing_longer_than_the_deadline_left_completes(adapter: OpenAIProvider) -> None:
    records: list[CallRecord] = []
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1))
    retrying = late_call(adapter, records, breakers, left_s=0.3)
    text, replies = [], []
    async for part in retrying.stream(call("drip-0.5")):  # pauses of 0.5 s, under the 5 s per read
        if isinstance(part, TextDelta):
            text.append(part.text)
        elif isinstance(part, Reply):
            replies.append(part)
    assert "".join(text) == "Hello! You said: hi" and len(replies) == 1
    assert [r.outcome for r in records] == ["ok"]
    assert await breakers.state("openai/m") is BreakerState.CLOSED


async def test_a_late_stream_silent_until_the_deadline_is_cut_as_a_timeout(adapter: OpenAIProvider) -> None:
    records: list[CallRecord] = []
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1))
    retrying = late_call(adapter, records, breakers, left_s=0.3)
    started = time.monotonic()
    with pytest.raises(ProviderError) as cut:
        async for _ in retrying.stream(call("slow-2")):
            pass
    assert cut.value.kind == "timeout" and time.monotonic() - started < 1.5
    # The call's own timeout, charged to the breaker; billed for its prompt (the provider had it), estimated
    assert [(r.outcome, r.usage_estimated) for r in records] == [("timeout", True)]
    assert records[0].usage is not None and records[0].usage.completion_tokens == 0
    assert await breakers.state("openai/m") is BreakerState.OPEN


def long_wait(model: str, *, headers_s: float, first_output_s: float) -> ProviderCall:
    """A stream whose client waits long for its first output (`first_output_s`), as the executor makes
    it: each read may take that long, its response's start only the executor's own time for a call."""
    return ProviderCall(
        model=model,
        messages=(ChatMessage(role="user", content="hi"),),
        timeout_s=first_output_s,
        first_output_s=first_output_s,
        headers_s=headers_s,
    )


async def test_a_provider_that_does_not_begin_its_response_is_left_at_the_executors_own_time(
    adapter: OpenAIProvider,
) -> None:
    """A client that waits 10 minutes does not make a provider that never answers hold its task that long:
    its response must begin within the executor's time for a call, and the timeout counts as the
    provider's (the breaker opens), so the task falls back at once."""
    records: list[CallRecord] = []
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1))
    recorded = RecordingProvider(adapter, provider="openai", model="m", on_call=_keep(records))
    guarded = BreakerGuard(recorded, breakers, key="openai/m")
    started = time.monotonic()
    with pytest.raises(ProviderError) as cut:
        async for _ in guarded.stream(long_wait("slow-3", headers_s=0.4, first_output_s=600)):
            pass
    assert cut.value.kind == "timeout" and time.monotonic() - started < 2.0
    assert cut.value.message == "openai: the response did not begin within 0.4 s"
    assert [r.outcome for r in records] == ["timeout"]
    assert await breakers.state("openai/m") is BreakerState.OPEN


async def test_the_response_start_bound_defers_to_a_shorter_first_output_bound(
    adapter: OpenAIProvider,
) -> None:
    """Where the first output's bound is the shorter, it alone cuts (and its cut says so)."""
    started = time.monotonic()
    with pytest.raises(ProviderError) as cut:
        async for _ in RecordingProvider(adapter, provider="openai", model="m", on_call=_keep([])).stream(
            long_wait("slow-3", headers_s=5.0, first_output_s=0.4)
        ):
            pass
    assert time.monotonic() - started < 2.0
    assert cut.value.message == "openai: no output within 0.4 s (the task's deadline)"


def _keep(records: list[CallRecord]) -> Callable[[CallRecord], Awaitable[None]]:
    async def on_call(record: CallRecord) -> None:
        records.append(record)

    return on_call
