"""Provider rpm/tpm limits: token buckets that refill over a minute; an empty bucket moves on at once."""

from __future__ import annotations

import pytest

from switchyard.common.events import ChatMessage
from switchyard.executor.providers.base import ProviderCall
from switchyard.executor.providers.testing import ScriptedProvider, reply
from switchyard.executor.resilience.breaker import BreakerGuard, BreakerState, LocalBreakers
from switchyard.executor.resilience.limits import Limit, LimitGuard, LocalRateLimits, expected_tokens

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _call(max_tokens: int | None = 100) -> ProviderCall:
    return ProviderCall(
        model="m", messages=(ChatMessage(role="user", content="x" * 400),), max_tokens=max_tokens
    )


async def test_requests_per_minute_refill_continuously() -> None:
    clock = Clock()
    limits = LocalRateLimits({"openai": Limit(rpm=60)}, clock=clock)
    assert all([await limits.try_acquire("openai", tokens=1) for _ in range(60)])
    assert not await limits.try_acquire("openai", tokens=1)
    clock.now += 1.0  # 60 a minute: one more each second
    assert await limits.try_acquire("openai", tokens=1)
    assert not await limits.try_acquire("openai", tokens=1)
    assert await limits.try_acquire("anthropic", tokens=10**9)  # no limit configured


async def test_tokens_per_minute_and_an_empty_bucket_takes_nothing() -> None:
    clock = Clock()
    limits = LocalRateLimits({"openai": Limit(rpm=100, tpm=1000)}, clock=clock)
    assert await limits.try_acquire("openai", tokens=800)
    assert not await limits.try_acquire("openai", tokens=300)  # refused: the request is not taken either
    assert await limits.try_acquire("openai", tokens=200)
    clock.now += 30.0
    assert await limits.try_acquire("openai", tokens=500)
    assert expected_tokens(_call()) == 200 and expected_tokens(_call(None)) == 356


async def test_the_guard_refuses_without_calling_and_without_touching_the_breaker() -> None:
    inner = ScriptedProvider(reply("hi"))
    breakers = LocalBreakers()
    guarded = BreakerGuard(inner, breakers, key="openai/m")
    guard = LimitGuard(guarded, LocalRateLimits({"openai": Limit(rpm=1)}), keys=("openai",))
    assert (await guard.request(_call())).content == "hi"
    for _ in range(6):
        with pytest.raises(Exception, match="rpm/tpm limit") as caught:
            await guard.request(_call())
        assert caught.value.kind == "rate_limited" and not caught.value.retryable  # type: ignore[attr-defined]
    assert len(inner.calls) == 1 and await breakers.state("openai/m") is BreakerState.CLOSED
