"""Provider rpm/tpm limits: token buckets that refill over a minute; an empty bucket moves on at once."""

from __future__ import annotations

import pytest

from switchyard.common.events import ChatMessage, Usage
from switchyard.executor.providers.base import ProviderCall, Reply, TextDelta
from switchyard.executor.providers.errors import ProviderError, provider_error
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


# A coding agent's call: a 100-token prompt (400 characters) and a 50,000-token max_tokens, answered in 20.
def _agent_call() -> ProviderCall:
    return _call(max_tokens=50_000)


def _used(prompt: int = 100, completion: int = 20, cache_read: int = 0) -> Reply:
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion, cache_read_tokens=cache_read)
    return Reply(content="ok", finish_reason="stop", model="m", usage=usage)


async def _room(limits: LocalRateLimits, key: str, tokens: int) -> bool:
    """Whether `tokens` are in `key`'s tpm bucket (taken if so)."""
    return await limits.try_acquire(key, tokens=tokens)


async def test_a_call_s_tokens_settle_to_what_it_used_not_its_max_tokens() -> None:
    """Admitted on its worst case (prompt + max_tokens), a call then keeps only what it used: 20 calls of
    50,000 max_tokens fit a 400,000 tpm bucket when each used 120 tokens (before: 7)."""
    limits = LocalRateLimits({"anthropic": Limit(tpm=400_000)}, clock=Clock())
    guard = LimitGuard(ScriptedProvider(_used()), limits, keys=("anthropic",))
    for _ in range(20):
        await guard.request(_agent_call())
    assert await _room(limits, "anthropic", 400_000 - 20 * 120)
    assert not await _room(limits, "anthropic", 1)


async def test_the_worst_case_must_be_there_and_more_than_taken_is_charged() -> None:
    clock = Clock()
    limits = LocalRateLimits({"m": Limit(tpm=60_000)}, clock=clock)
    guard = LimitGuard(ScriptedProvider(_used(prompt=9_000, completion=1_000)), limits, keys=("m",))
    assert await _room(limits, "m", 10_000)  # 50,000 left: less than a call's worst case (50,100)
    with pytest.raises(Exception, match="rpm/tpm limit"):
        await guard.request(_agent_call())
    clock.now += 1.0  # 1,000 more: 51,000
    await guard.request(_agent_call())  # its prompt was 9,000, not the 100 estimated: all 10,000 kept
    assert await _room(limits, "m", 41_000) and not await _room(limits, "m", 1)


async def test_a_give_back_never_fills_the_bucket_past_its_capacity() -> None:
    clock = Clock()
    limits = LocalRateLimits({"m": Limit(tpm=100_000)}, clock=clock)
    inner = ScriptedProvider(_used())

    class Slow:
        async def request(self, call: ProviderCall) -> Reply:
            clock.now += 60.0  # the bucket refills to full while the call runs
            return await inner.request(call)

    await LimitGuard(Slow(), limits, keys=("m",)).request(_agent_call())
    assert await _room(limits, "m", 100_000) and not await _room(limits, "m", 1)


async def test_cache_reads_count_as_the_provider_counts_them() -> None:
    """OpenAI counts every input token, cached or not; Anthropic's input limit leaves out cache reads."""
    for counted, left in ((True, 100_000 - 10_020), (False, 100_000 - 1_020)):
        limits = LocalRateLimits({"m": Limit(tpm=100_000)}, clock=Clock())
        reply = _used(prompt=10_000, completion=20, cache_read=9_000)
        await LimitGuard(ScriptedProvider(reply), limits, keys=("m",), cache_reads=counted).request(
            _agent_call()
        )
        assert await _room(limits, "m", left) and not await _room(limits, "m", 1)


async def test_failed_cut_and_refused_calls_give_back_what_they_did_not_use() -> None:
    limits = LocalRateLimits({"p": Limit(tpm=100_000), "p/m": Limit(tpm=100_000)}, clock=Clock())
    failing = ScriptedProvider(
        provider_error("overloaded", "busy"), provider_error("bad_request", "no", sent=False)
    )
    with pytest.raises(ProviderError):
        await LimitGuard(failing, limits, keys=("p",)).request(_agent_call())
    # an error before any output: its prompt (estimated) may have been read, its max_tokens were not used
    assert await _room(limits, "p", 100_000 - 100) and not await _room(limits, "p", 1)
    with pytest.raises(ProviderError):  # refused before it was sent: nothing used
        await LimitGuard(failing, limits, keys=("p/m",)).request(_agent_call())
    assert await _room(limits, "p/m", 100_000) and not await _room(limits, "p/m", 1)

    limits = LocalRateLimits({"p": Limit(tpm=100_000), "p/m": Limit(tpm=100_000)}, clock=Clock())
    long = ScriptedProvider(reply("word " * 50))
    stream = LimitGuard(long, limits, keys=("p",)).stream(_agent_call())
    async for part in stream:
        assert isinstance(part, TextDelta)
        break
    await stream.aclose()  # cut after one delta ("word ": 5 characters, one token as estimated)
    assert await _room(limits, "p", 100_000 - 101) and not await _room(limits, "p", 1)

    limits = LocalRateLimits({"p": Limit(tpm=100_000), "p/m": Limit(rpm=1)}, clock=Clock())
    assert await limits.try_acquire("p/m", tokens=1)
    with pytest.raises(Exception, match="p/m: this executor"):
        await LimitGuard(ScriptedProvider(_used()), limits, keys=("p", "p/m")).request(_agent_call())
    assert await _room(limits, "p", 100_000)  # refused under the model's limit: never sent, nothing kept


async def test_a_streamed_call_settles_to_its_reply_s_usage() -> None:
    limits = LocalRateLimits({"p": Limit(tpm=100_000)}, clock=Clock())
    parts = [
        p async for p in LimitGuard(ScriptedProvider(_used()), limits, keys=("p",)).stream(_agent_call())
    ]
    assert isinstance(parts[-1], Reply)
    assert await _room(limits, "p", 100_000 - 120) and not await _room(limits, "p", 1)
