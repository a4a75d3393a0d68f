"""Backoff, breakers and fallback, with a fake clock and scripted providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import ProviderCall, Reply, StreamPart, TextDelta
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.testing import BreaksAfter, ScriptedProvider, fails, reply
from switchyard.executor.resilience.breaker import BreakerConfig, BreakerGuard, BreakerState, LocalBreakers
from switchyard.executor.resilience.deadline import Deadline
from switchyard.executor.resilience.fallback import FallbackProvider, Target
from switchyard.executor.resilience.retry import RetryingProvider, RetryPolicy

pytestmark = pytest.mark.unit
CALL = ProviderCall(model="m", messages=(ChatMessage(role="user", content="hi"),), timeout_s=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self, clock: Clock | None = None) -> None:
        self.delays: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=10, base_s=0.5, cap_s=4.0)
    error = fails("overloaded")
    lows = [policy.delay(n, error, rand=lambda: 0.0) for n in range(1, 6)]
    highs = [policy.delay(n, error, rand=lambda: 1.0) for n in range(1, 6)]
    assert lows == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert highs == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_retry_after_is_honoured_unless_too_long_and_non_retryable_kinds_are_not_retried() -> None:
    policy = RetryPolicy(max_retries=3, base_s=0.1, max_retry_after_s=5.0)
    assert policy.delay(1, fails("rate_limited", retry_after=2.0), rand=lambda: 0.5) == 2.0
    assert policy.delay(1, fails("rate_limited", retry_after=30.0)) is None
    assert policy.delay(1, fails("auth")) is None
    assert policy.delay(4, fails("overloaded")) is None


async def test_retrying_waits_then_succeeds_and_stops_at_the_limit() -> None:
    flaky = ScriptedProvider(fails("rate_limited", retry_after=1.5), fails("overloaded"), reply("ok"))
    sleeps = Sleeps()
    retrying = RetryingProvider(flaky, RetryPolicy(max_retries=2), deadline=Deadline.within(60), sleep=sleeps)
    assert (await retrying.request(CALL)).content == "ok"
    assert len(flaky.calls) == 3 and sleeps.delays[0] == 1.5

    down = ScriptedProvider(fails("overloaded"))
    retrying = RetryingProvider(
        down, RetryPolicy(max_retries=2), deadline=Deadline.within(60), sleep=Sleeps()
    )
    with pytest.raises(Exception, match="scripted overloaded"):
        await retrying.request(CALL)
    assert len(down.calls) == 3


async def test_retrying_never_waits_past_the_deadline_and_shortens_call_timeouts() -> None:
    clock = Clock()
    down = ScriptedProvider(fails("rate_limited", retry_after=8.0))
    deadline = Deadline.within(5.0, clock=clock)
    retrying = RetryingProvider(down, RetryPolicy(max_retries=5), deadline=deadline, sleep=Sleeps(clock))
    with pytest.raises(Exception, match="rate_limited"):
        await retrying.request(CALL)
    assert len(down.calls) == 1  # 8 s of Retry-After do not fit in 5 s
    assert down.calls[0].timeout_s == 5.0


async def test_a_stream_is_retried_before_its_first_text_but_not_after() -> None:
    script = ScriptedProvider(
        fails("overloaded"), BreaksAfter("Hello there", fails("network")), reply("never")
    )
    retrying = RetryingProvider(
        script, RetryPolicy(max_retries=5), deadline=Deadline.within(60), sleep=Sleeps()
    )
    seen: list[str] = []
    with pytest.raises(Exception, match="scripted network"):
        async for part in retrying.stream(CALL):
            if isinstance(part, TextDelta):
                seen.append(part.text)
    assert "".join(seen) == "Hello there" and len(script.calls) == 2


async def test_breaker_opens_after_consecutive_failures_then_probes_once_after_the_cool_down() -> None:
    clock = Clock()
    changes: list[BreakerState] = []
    breakers = LocalBreakers(
        BreakerConfig(failure_threshold=5, open_s=60.0),
        clock=clock,
        on_change=lambda _k, s: changes.append(s),
    )
    for _ in range(4):
        await breakers.record_failure("p/m")
    await breakers.record_success("p/m")  # consecutive: a success starts the count again
    for _ in range(4):
        await breakers.record_failure("p/m")
    assert await breakers.allow("p/m")
    await breakers.record_failure("p/m")
    assert await breakers.state("p/m") is BreakerState.OPEN
    assert not await breakers.allow("p/m")
    clock.now += 59.9
    assert not await breakers.allow("p/m")
    clock.now += 0.2
    assert await breakers.allow("p/m")  # the one probe
    assert not await breakers.allow("p/m")  # nobody else while it is out
    await breakers.record_failure("p/m")  # the probe failed: open again for another minute
    assert not await breakers.allow("p/m")
    clock.now += 60.0
    assert await breakers.allow("p/m")
    await breakers.record_success("p/m")
    assert await breakers.state("p/m") is BreakerState.CLOSED
    assert changes == ["open", "half_open", "open", "half_open", "closed"]
    assert await breakers.allow("other/model")  # per provider/model


async def test_breaker_guard_refuses_while_open_and_ignores_the_callers_own_mistakes() -> None:
    clock = Clock()
    breakers = LocalBreakers(BreakerConfig(failure_threshold=2), clock=clock)
    bad_request = BreakerGuard(ScriptedProvider(fails("bad_request")), breakers, key="a")
    for _ in range(3):
        with pytest.raises(Exception, match="bad_request"):
            await bad_request.request(CALL)
    assert await breakers.state("a") is BreakerState.CLOSED
    down = ScriptedProvider(fails("overloaded"))
    guard = BreakerGuard(down, breakers, key="b")
    for _ in range(2):
        with pytest.raises(Exception, match="overloaded"):
            await guard.request(CALL)
    clock.now += 15.0
    with pytest.raises(Exception, match="circuit open") as caught:
        await guard.request(CALL)
    assert caught.value.kind == "circuit_open"  # type: ignore[attr-defined]
    assert caught.value.retry_after == 45.0  # type: ignore[attr-defined]  # the cool-down (60 s) left
    assert len(down.calls) == 2


async def test_a_call_refused_before_it_was_sent_gives_its_probe_back_and_teaches_nothing() -> None:
    """A model known to refuse a call (a forced tool to Claude 5.5, stop sequences with tools to
    gpt-6.1-sol) is refused by the adapter before anything goes out. Taken for a success, it would close a
    half-open breaker on a provider nobody heard from; the probe slot goes back instead, for a call that
    reaches the provider."""
    clock = Clock()
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1, open_s=60.0), clock=clock)
    await breakers.record_failure("p/m")
    clock.now += 61
    refused = provider_error("bad_request", "p: refuses a forced tool; not sent", sent=False)
    guard = BreakerGuard(ScriptedProvider(refused), breakers, key="p/m")
    with pytest.raises(Exception, match="not sent"):
        await guard.request(CALL)
    assert await breakers.state("p/m") is BreakerState.HALF_OPEN  # not closed by it
    assert await breakers.allow("p/m")  # its probe slot came back at once, not after open_s
    await breakers.record_failure("p/m")
    assert await breakers.state("p/m") is BreakerState.OPEN


async def test_fallback_moves_on_and_says_who_answered() -> None:
    first, second = ScriptedProvider(fails("overloaded")), ScriptedProvider(reply("from b"))
    chain = FallbackProvider([Target("a/x", first, "x"), Target("b/y", second, "y")])
    answer = await chain.request(CALL)
    assert answer.content == "from b" and chain.answered_by is not None and chain.answered_by.name == "b/y"
    assert second.calls[0].model == "y"  # each target is asked for its own model name


async def test_fallback_stops_at_content_policy_and_summarises_an_exhausted_chain() -> None:
    refused = FallbackProvider(
        [
            Target("a", ScriptedProvider(fails("content_policy")), "x"),
            Target("b", ScriptedProvider(reply("no")), "y"),
        ]
    )
    with pytest.raises(Exception, match="content_policy") as caught:
        await refused.request(CALL)
    assert caught.value.kind == "content_policy"  # type: ignore[attr-defined]
    exhausted = FallbackProvider(
        [
            Target("a", ScriptedProvider(fails("auth")), "x"),
            Target("b", ScriptedProvider(fails("timeout")), "y"),
        ]
    )
    with pytest.raises(Exception, match=r"every candidate failed \(a: auth; b: timeout\)"):
        await exhausted.request(CALL)


async def test_an_exhausted_chain_ending_on_a_wrong_key_is_as_busy_as_an_earlier_candidate() -> None:
    """The chain's kind becomes the task's code and its `x-should-retry` at the gateway: a wrong key on the
    last candidate (`auth`: false, the SDKs give up) does not stand for a chain whose first candidate was
    only rate limited, which the SDKs' retry after its Retry-After can reach again."""
    chain = FallbackProvider(
        [
            Target("a", ScriptedProvider(fails("rate_limited", retry_after=3)), "x"),
            Target("b", ScriptedProvider(fails("auth")), "y"),
        ]
    )
    with pytest.raises(Exception, match=r"every candidate failed \(a: rate_limited; b: auth\)") as caught:
        await chain.request(CALL)
    assert (caught.value.kind, caught.value.retry_after) == ("rate_limited", 3)  # type: ignore[attr-defined]
    only_wrong = FallbackProvider(
        [Target("a", ScriptedProvider(fails("auth")), "x"), Target("b", ScriptedProvider(fails("auth")), "y")]
    )
    with pytest.raises(Exception, match="every candidate failed") as caught:
        await only_wrong.request(CALL)
    assert caught.value.kind == "auth"  # type: ignore[attr-defined]
    no_credit = FallbackProvider(
        [
            Target("a", ScriptedProvider(fails("quota_exhausted")), "x"),
            Target("b", ScriptedProvider(fails("auth")), "y"),
        ]
    )
    with pytest.raises(Exception, match="every candidate failed") as caught:
        await no_credit.request(CALL)
    assert caught.value.kind == "auth"  # type: ignore[attr-defined]


async def test_an_account_out_of_credit_falls_back_and_counts_against_its_provider() -> None:
    """OpenAI's `insufficient_quota` and its kin (`quota_exhausted`): not retried on the same model (no wait
    helps), the next candidate is tried, the breaker counts it as it counts a wrong key, and at the end of a
    chain it gives way to an earlier candidate's passing failure, as a wrong key does."""
    broke, other = ScriptedProvider(fails("quota_exhausted")), ScriptedProvider(reply("from b"))
    chain = FallbackProvider([Target("a", broke, "x"), Target("b", other, "y")])
    assert (await chain.request(CALL)).content == "from b" and len(broke.calls) == 1
    assert not provider_error("quota_exhausted", "no credit").retryable
    breakers = LocalBreakers(BreakerConfig(failure_threshold=2), clock=Clock())
    guard = BreakerGuard(ScriptedProvider(fails("quota_exhausted")), breakers, key="a")
    for _ in range(2):
        with pytest.raises(Exception, match="quota_exhausted"):
            await guard.request(CALL)
    assert await breakers.state("a") is BreakerState.OPEN
    busy_then_broke = FallbackProvider(
        [
            Target("a", ScriptedProvider(fails("rate_limited", retry_after=3)), "x"),
            Target("b", ScriptedProvider(fails("quota_exhausted")), "y"),
        ]
    )
    with pytest.raises(Exception, match=r"\(a: rate_limited; b: quota_exhausted\)") as caught:
        await busy_then_broke.request(CALL)
    assert caught.value.kind == "rate_limited"  # type: ignore[attr-defined]
    # this executor's own rpm/tpm limit refuses without a retry of the same model (`LimitGuard`), and is as
    # passing: it stood for nothing before, and the chain ended on the out-of-credit account
    own_limit = provider_error("rate_limited", "openai: this executor's rpm/tpm limit", retryable=False)
    limited_then_broke = FallbackProvider(
        [
            Target("a", ScriptedProvider(own_limit), "x"),
            Target("b", ScriptedProvider(fails("quota_exhausted")), "y"),
        ]
    )
    with pytest.raises(Exception, match="every candidate failed") as caught:
        await limited_then_broke.request(CALL)
    assert caught.value.kind == "rate_limited"  # type: ignore[attr-defined]


async def test_streamed_fallback_switches_before_text_and_never_after() -> None:
    switches: list[str] = []

    async def on_switch(target: Target, _error: Exception) -> None:
        switches.append(target.name)

    chain = FallbackProvider(
        [
            Target("a", ScriptedProvider(fails("network")), "x"),
            Target("b", ScriptedProvider(BreaksAfter("partial answer", fails("network"))), "y"),
            Target("c", ScriptedProvider(reply("unused")), "z"),
        ],
        on_switch=on_switch,  # type: ignore[arg-type]
    )
    parts: list[object] = []
    with pytest.raises(Exception, match="network"):
        async for part in chain.stream(CALL):
            parts.append(part)
    assert switches == ["b"]
    assert "".join(p.text for p in parts if isinstance(p, TextDelta)) == "partial answer"
    assert not any(isinstance(p, Reply) for p in parts)


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_probe_cut_by_us_gives_its_slot_back(streamed: bool) -> None:
    """A half-open breaker's probe whose task's client cancelled it (or whose task's deadline or idle
    limit cut it) says nothing about the provider: the next call probes at once, not after another
    cool-down during which every tenant's calls to the model are refused."""
    clock = Clock()
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1, open_s=60.0), clock=clock)
    await breakers.record_failure("p/m")
    clock.now += 61
    started = asyncio.Event()

    class Hangs:
        async def request(self, call: ProviderCall) -> Reply:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def stream(self, call: ProviderCall) -> AsyncIterator[StreamPart]:
            yield TextDelta("The")
            started.set()
            await asyncio.Event().wait()

    guard = BreakerGuard(Hangs(), breakers, key="p/m")

    async def probe() -> None:
        if streamed:
            async for _ in guard.stream(CALL):
                pass
        else:
            await guard.request(CALL)

    task = asyncio.create_task(probe())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await breakers.state("p/m") is BreakerState.HALF_OPEN  # neither closed nor opened by it
    assert await breakers.allow("p/m")  # the next call is the probe now
