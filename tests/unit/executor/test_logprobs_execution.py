"""Token log probabilities through `execute`: the answering reply's tokens in the result (and each other
answer's), the cut at MAX_LOGPROB_ENTRIES, a stream's chunks carrying each delta's tokens, and the
strategies and failovers keeping only the chosen answer's tokens."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Choice,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskCompleted,
    TaskRouted,
    TaskSubmitted,
    TokenLogprob,
    TopLogprob,
)
from switchyard.common.events.logprobs import MAX_LOGPROB_ENTRIES, logprob_entries
from switchyard.common.streaming import decode_chunk
from switchyard.executor import logprobs
from switchyard.executor.chunks import ChunkSink
from switchyard.executor.execution import ExecutionPolicy, execute
from switchyard.executor.providers.base import Provider, ProviderCall, Reply
from switchyard.executor.providers.local import LocalModelConfig, LocalProvider
from switchyard.executor.providers.testing import ScriptedProvider, fails, reply, tokens
from switchyard.executor.resilience.breaker import LocalBreakers
from switchyard.executor.resilience.limits import Limit, LocalRateLimits
from switchyard.executor.resilience.retry import RetryPolicy

pytestmark = pytest.mark.unit
FAST = ExecutionPolicy(
    retry=RetryPolicy(max_retries=0, base_s=0.001, cap_s=0.002), call_timeout_s=5, task_deadline_s=10
)
CHECKS = ["json", "code", "refusal", "truncation", "confidence"]
ANSWER = "The capital of France is Paris."


def routed(
    *providers: str,
    strategy: str = "single",
    fan_out: int = 1,
    mode: str = "race",
    **request: Any,
) -> TaskRouted:
    task = TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        request=ChatRequest(messages=[ChatMessage(role="user", content="Capital of France?")], **request),
        submitted_at=datetime.now(UTC),
    )
    candidates = [
        RouteCandidate(model=f"{p}/m", provider=p, upstream_model="m", tier="fast") for p in providers
    ]
    decision = RoutingDecision(
        strategy=strategy,
        tier="fast",
        candidates=candidates,
        policy_version="t",
        fan_out=fan_out,
        parallel_mode=mode,
        checks=CHECKS if strategy != "single" else [],
    )
    classification = Classification(
        type="qa", confidence=0.9, complexity=0.5, urgency=0.5, model_version="t", latency_ms=1
    )
    return TaskRouted(task=task, classification=classification, decision=decision)


class Bus:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.calls: list[ProviderCallRecorded] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.chunks.append(data)

    async def report(self, _attempt: int, record: ProviderCallRecorded) -> None:
        self.calls.append(record)

    def streamed_tokens(self) -> list[TokenLogprob]:
        return [t for raw in self.chunks for t in decode_chunk(raw).logprobs or ()]


async def run(task: TaskRouted, providers: dict[str, Provider], bus: Bus | None = None) -> TaskCompleted:
    bus = bus or Bus()
    outcome = await execute(
        task,
        providers=providers,
        breakers=LocalBreakers(),
        policy=FAST,
        report=bus.report,
        chunks=ChunkSink(bus.publish, tenant_id="acme", task_id="t1") if task.task.chat().stream else None,
        limits=LocalRateLimits({"scripted": Limit(rpm=1000)}),
        cancelled=lambda: False,  # every wrapper a call goes through, the cancellation guard included
    )
    assert isinstance(outcome, TaskCompleted), outcome
    return outcome


class Slow:
    """Answers `text`, with its tokens, after `delay` seconds."""

    def __init__(self, delay: float, text: str) -> None:
        self.delay, self.text = delay, text

    async def request(self, call: ProviderCall) -> Reply:
        await asyncio.sleep(self.delay)
        return reply(self.text, logprobs=tokens(self.text))


async def test_the_answers_tokens_and_their_alternatives_are_in_the_result_when_asked() -> None:
    answer = tokens(ANSWER, top=2)
    provider = ScriptedProvider(reply(ANSWER, logprobs=answer))
    outcome = await run(routed("openai", logprobs=True, top_logprobs=2), {"openai": provider})
    assert outcome.logprobs == list(answer) and not outcome.logprobs_truncated
    assert [t.top_logprobs[0].token for t in outcome.logprobs] == ["alt0"] * len(answer)
    assert (provider.calls[0].logprobs, provider.calls[0].top_logprobs) == (True, 2)

    # Not asked: none, even from a provider that sends them anyway.
    plain = await run(routed("openai"), {"openai": provider})
    assert plain.logprobs is None and not provider.calls[-1].logprobs


@pytest.mark.parametrize("asked", [True, False])
async def test_several_answers_keep_each_ones_tokens(asked: bool) -> None:
    """`n` = 3: the first answer's tokens are the result's `logprobs`, each other's stay with it; an
    answer the provider gave none for keeps None. Not asked: none anywhere."""
    second = Choice(content="Paris.", finish_reason="stop", logprobs=list(tokens("Paris.", top=1)))
    third = Choice(content="Paris, France.", finish_reason="stop")
    whole = replace(reply(ANSWER, logprobs=tokens(ANSWER)), other_choices=(second, third))
    outcome = await run(routed("openai", n=3, logprobs=asked), {"openai": ScriptedProvider(whole)})
    assert [c.content for c in outcome.other_choices] == ["Paris.", "Paris, France."]
    if asked:
        assert outcome.logprobs == list(tokens(ANSWER))
        assert [c.logprobs for c in outcome.other_choices] == [list(tokens("Paris.", top=1)), None]
    else:
        assert outcome.logprobs is None and [c.logprobs for c in outcome.other_choices] == [None, None]
    assert not outcome.logprobs_truncated


def dumped(token: TokenLogprob) -> dict[str, Any]:
    return token.model_dump(exclude_none=True)


def words(count: int) -> str:
    return " ".join(f"w{i}" for i in range(count))


async def test_the_result_is_cut_at_the_entry_limit_first_answer_first() -> None:
    """3,000 tokens of 21 entries (63,000), then 200 more in the second answer: 120 of them fit (2,520),
    the 121st does not, and nothing after it keeps its tokens: the rest of the second answer and all of
    the third (an empty list: asked, and cut). An answer the provider gave no tokens for keeps None."""
    first, second, third = words(3000), words(200), words(5)
    answer, second_answer = tokens(first, top=20), tokens(second, top=20)
    others = (
        Choice(content=second, finish_reason="stop", logprobs=list(second_answer)),
        Choice(content=third, finish_reason="stop", logprobs=list(tokens(third))),
        Choice(content="none", finish_reason="stop"),
    )
    whole = replace(reply(first, logprobs=answer), other_choices=others)
    outcome = await run(
        routed("openai", n=4, logprobs=True, top_logprobs=20), {"openai": ScriptedProvider(whole)}
    )
    assert outcome.logprobs_truncated
    assert outcome.logprobs == list(answer)
    kept = [c.logprobs for c in outcome.other_choices]
    assert kept == [list(second_answer[:120]), [], None]
    assert [c.content for c in outcome.other_choices] == [second, third, "none"]  # the text is whole
    total = logprob_entries(outcome.logprobs) + sum(
        logprob_entries(c.logprobs) for c in outcome.other_choices
    )
    assert total == 63000 + 120 * 21 <= MAX_LOGPROB_ENTRIES


def test_a_token_is_kept_only_with_all_its_entries_and_the_cut_ends_every_list() -> None:
    """At the limit exactly nothing is cut; one entry over, the token that does not fit whole goes, and
    so does every later one, even one small enough for what was left."""
    big, small = tokens("a b", top=2), tokens("c d")  # 3 + 3 entries, then 1 + 1
    others = [Choice(content="c d", finish_reason="stop", logprobs=list(small))]
    exact = logprobs.kept(big, others, asked=True, limit=8)
    assert (exact.first, exact.others, exact.truncated) == (list(big), others, False)
    over = logprobs.kept(big, others, asked=True, limit=5)
    assert (over.first, [c.logprobs for c in over.others], over.truncated) == ([big[0]], [[]], True)


async def test_a_whole_answer_sent_to_a_stream_carries_the_tokens_the_result_keeps() -> None:
    """Several answers of a cascade, sent to a stream whole once judged: each in one chunk under its
    `choice`, with as many of its tokens as the result keeps (3,120 of the first's 3,200 tokens of 21
    entries, none of the second's: all of them would outgrow a message as they outgrow a result)."""
    first = words(3200)
    answer = tokens(first, top=20)
    other = Choice(content="x", finish_reason="stop", logprobs=list(tokens("x")))
    whole = replace(reply(first, logprobs=answer), other_choices=(other,))
    bus = Bus()
    task = routed("openai", "local", strategy="cascade", n=2, stream=True, logprobs=True, top_logprobs=20)
    provider = ScriptedProvider(whole)
    outcome = await run(task, {"openai": provider, "local": provider}, bus)
    assert outcome.logprobs_truncated and outcome.logprobs == list(answer[:3120])
    assert outcome.other_choices[0].logprobs == []
    sent = [orjson.loads(raw) for raw in bus.chunks]
    assert [(c.get("choice", 0), c["delta"]) for c in sent if c.get("delta")] == [(0, first), (1, "x")]
    assert [t for c in sent for t in c.get("logprobs", ())] == [dumped(t) for t in answer[:3120]]


async def test_several_answers_streamed_send_every_token_and_the_result_keeps_the_cut() -> None:
    """Streamed as they come, each answer's chunks carry their own tokens (each chunk is small); the
    result holds the cut over all the answers, the first's first."""
    first, second = words(3000), words(200)
    answer, second_answer = tokens(first, top=20), tokens(second, top=20)
    other = Choice(content=second, finish_reason="stop", logprobs=list(second_answer))
    bus = Bus()
    task = routed("openai", n=2, stream=True, logprobs=True, top_logprobs=20)
    outcome = await run(
        task,
        {"openai": ScriptedProvider(replace(reply(first, logprobs=answer), other_choices=(other,)))},
        bus,
    )
    assert outcome.logprobs_truncated and outcome.logprobs == list(answer)
    assert outcome.other_choices[0].logprobs == list(second_answer[:120])
    sent = [decode_chunk(raw) for raw in bus.chunks]
    assert [t for c in sent if c.choice == 1 for t in c.logprobs or ()] == list(second_answer)
    assert [t for c in sent if c.choice == 0 for t in c.logprobs or ()] == list(answer)


async def test_a_stream_sends_each_deltas_tokens_compactly_and_the_result_has_them_all() -> None:
    """Token by token: each text chunk carries its token; a token holding part of a character comes in a
    chunk of its own with its bytes (and no text); `bytes` is left out where they are the text's UTF-8.
    Not asked: no chunk has the key."""
    answer = (
        TokenLogprob(token="It", logprob=-0.1),
        TokenLogprob(token="", logprob=-0.2, bytes=[0xE2]),  # the first byte of the apostrophe
        TokenLogprob(token="\u2019s", logprob=-0.3, bytes=[0x80, 0x99, 0x73]),
        TokenLogprob(token=" Paris", logprob=-0.01, top_logprobs=[TopLogprob(token=" London", logprob=-4.6)]),
    )
    text = "It\u2019s Paris"
    provider = ScriptedProvider(reply(text, logprobs=answer))
    bus = Bus()
    outcome = await run(
        routed("scripted", stream=True, logprobs=True, top_logprobs=1), {"scripted": provider}, bus
    )
    assert outcome.content == text and outcome.logprobs == list(answer)
    raw = [orjson.loads(c) for c in bus.chunks]
    assert raw[:5] == [
        {"seq": 0, "model": "scripted/m"},  # the model begun, before any output
        {
            "seq": 1,
            "delta": "It",
            "logprobs": [{"token": "It", "logprob": -0.1, "top_logprobs": []}],
        },
        {
            "seq": 2,
            "delta": "",
            "logprobs": [{"token": "", "logprob": -0.2, "bytes": [226], "top_logprobs": []}],
        },
        {
            "seq": 3,
            "delta": "\u2019s",
            "logprobs": [{"token": "\u2019s", "logprob": -0.3, "bytes": [128, 153, 115], "top_logprobs": []}],
        },
        {
            "seq": 4,
            "delta": " Paris",
            "logprobs": [
                {"token": " Paris", "logprob": -0.01, "top_logprobs": [{"token": " London", "logprob": -4.6}]}
            ],
        },
    ]
    assert raw[5] == {"seq": 5, "done": True, "finish_reason": "stop"}
    assert bus.streamed_tokens() == outcome.logprobs

    plain = Bus()
    unasked = await run(routed("scripted", stream=True), {"scripted": provider}, plain)
    assert unasked.logprobs is None and unasked.content == text
    assert all("logprobs" not in orjson.loads(c) for c in plain.chunks)
    assert "".join(decode_chunk(c).delta or "" for c in plain.chunks) == text


async def test_a_stream_failing_over_before_text_carries_only_the_answering_candidates_tokens() -> None:
    bus = Bus()
    second = tokens(ANSWER, top=1)
    providers: dict[str, Provider] = {
        "openai": ScriptedProvider(fails("overloaded")),
        "gemini": ScriptedProvider(reply(ANSWER, logprobs=second)),
    }
    outcome = await run(routed("openai", "gemini", stream=True, logprobs=True), providers, bus)
    assert outcome.provider == "gemini" and outcome.logprobs == list(second)
    chunks = [decode_chunk(c) for c in bus.chunks]
    assert chunks[0].names_model() and not chunks[0].reset and chunks[0].model == "openai/m"
    assert chunks[1].reset and chunks[1].model == "gemini/m"
    assert bus.streamed_tokens() == list(second)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_cascade_delivers_the_accepted_answers_tokens_not_the_refused_ones(stream: bool) -> None:
    refused = "I'm sorry, but I can't help with that."
    providers: dict[str, Provider] = {
        "cheap": ScriptedProvider(reply(refused, logprobs=tokens(refused))),
        "strong": ScriptedProvider(reply(ANSWER, logprobs=tokens(ANSWER, start=-0.5))),
    }
    bus = Bus()
    task = routed("cheap", "strong", strategy="cascade", stream=stream, logprobs=True)
    outcome = await run(task, providers, bus)
    assert outcome.model == "strong/m" and outcome.logprobs == list(tokens(ANSWER, start=-0.5))
    assert bus.streamed_tokens() == (outcome.logprobs if stream else [])


async def test_a_race_and_a_best_of_deliver_the_chosen_answers_tokens() -> None:
    fast, slow = Slow(0.01, "fast answer"), Slow(5.0, "slow answer")
    race = await run(
        routed("fast", "slow", strategy="parallel", fan_out=2, logprobs=True), {"fast": fast, "slow": slow}
    )
    assert race.content == "fast answer" and race.logprobs == list(tokens("fast answer"))

    refused, good = "I'm sorry, but I cannot help with that.", "Here is a complete and useful answer."
    providers: dict[str, Provider] = {"a": Slow(0.0, refused), "b": Slow(0.02, good)}
    best = await run(
        routed("a", "b", strategy="parallel", fan_out=2, mode="best_of", logprobs=True), providers
    )
    assert best.model == "b/m" and best.logprobs == list(tokens(good))


async def test_the_local_model_refuses_a_call_for_log_probabilities_before_queuing_it(tmp_path: Path) -> None:
    """No model is loaded, no generation queued: the call is refused, unsent, so the chain moves on."""
    local = LocalProvider(LocalModelConfig(model_path=tmp_path / "absent.gguf"))
    call = ProviderCall(model="m", messages=[ChatMessage(role="user", content="Hi")], logprobs=True)
    try:
        for attempt in (local.request(call), anext(aiter(local.stream(call)))):
            with pytest.raises(ProviderError) as refused:
                await attempt
            assert (refused.value.kind, refused.value.sent) == ("bad_request", False)
            assert refused.value.message == "local: the local model returns no token log probabilities"
            assert local.expected_wait_s() is None and local._pending == 0
    finally:
        await local.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_an_estimated_count_is_flagged_on_the_call_and_the_result(stream: bool) -> None:
    """A reply whose usage the upstream did not report (`usage_estimated`): the call's record and the
    task's result say so, whole or streamed; a counted one says nothing."""
    estimated = replace(reply(ANSWER), usage_estimated=True)
    bus = Bus()
    outcome = await run(routed("openai", stream=stream), {"openai": ScriptedProvider(estimated)}, bus)
    assert outcome.usage_estimated and [c.usage_estimated for c in bus.calls] == [True]
    counted = Bus()
    outcome = await run(routed("openai", stream=stream), {"openai": ScriptedProvider(reply(ANSWER))}, counted)
    assert not outcome.usage_estimated and [c.usage_estimated for c in counted.calls] == [False]
