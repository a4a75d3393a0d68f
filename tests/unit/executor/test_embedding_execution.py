"""A routed embedding task through `execute_embedding`: the chain of same-space models, the checks on
each reply, the per-attempt records and what they bill, the packed result."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchyard.common import vectors
from switchyard.common.events import (
    ChargedCall,
    Classification,
    EmbeddingRequest,
    EmbeddingResult,
    RouteCandidate,
    RoutingDecision,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
)
from switchyard.executor.execution import ExecutionPolicy, execute_embedding
from switchyard.executor.providers.base import EmbeddingCall, EmbeddingReply, Provider, ProviderCall, Reply
from switchyard.executor.providers.testing import (
    ScriptedEmbedder,
    ScriptedProvider,
    embedding_reply,
    fails,
    reply,
)
from switchyard.executor.resilience.breaker import BreakerConfig, LocalBreakers
from switchyard.executor.resilience.limits import Limit, LocalRateLimits
from switchyard.executor.resilience.retry import RetryPolicy
from tests.unit.executor.test_execution import Bus

pytestmark = pytest.mark.unit
FAST = ExecutionPolicy(
    retry=RetryPolicy(max_retries=1, base_s=0.001, cap_s=0.002), call_timeout_s=5, task_deadline_s=10
)
TEXTS = ["the cat sat on the mat", "a dog barked", "tea or coffee?"]


def routed(
    *providers: str,
    dimensions: int | None = 4,
    texts: list[str] | None = None,
    asked: int | None = None,
    deadline: datetime | None = None,
) -> TaskRouted:
    """A task for `texts` whose candidates (one per provider, in order) must give `dimensions` numbers."""
    task = TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        user_id="u1",
        request=EmbeddingRequest(
            model=f"{providers[0]}/embed-{providers[0]}", input=texts or TEXTS, dimensions=asked
        ),
        deadline=deadline,
        submitted_at=datetime.now(UTC),
    )
    candidates = [
        RouteCandidate(
            model=f"{p}/embed-{p}",
            provider=p,
            upstream_model=f"embed-{p}",
            tier="fast",
            dimensions=dimensions,
        )
        for p in providers
    ]
    classification = Classification(
        type="embedding", confidence=1, complexity=0, urgency=0.5, model_version="passthrough", latency_ms=0
    )
    decision = RoutingDecision(tier="fast", candidates=candidates, policy_version="t")
    return TaskRouted(task=task, classification=classification, decision=decision)


async def run(
    task: TaskRouted,
    providers: dict[str, Provider],
    bus: Bus,
    *,
    breakers: LocalBreakers | None = None,
    limits: LocalRateLimits | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_cut: Callable[[list[ChargedCall]], object] | None = None,
    keep: vectors.Keep = vectors.inline,
) -> TaskCompleted | TaskFailed:
    async def cut(charged: list[ChargedCall]) -> None:
        if on_cut is not None:
            on_cut(charged)

    return await execute_embedding(
        task,
        providers=providers,
        breakers=breakers or LocalBreakers(),
        policy=FAST,
        report=bus.report,
        limits=limits,
        cancelled=cancelled,
        on_cut=cut,
        keep=keep,
    )


async def test_the_vectors_come_back_packed_with_usage_and_one_record() -> None:
    bus = Bus()
    answer = embedding_reply(3, 4, prompt_tokens=17)
    model = ScriptedEmbedder(answer)
    outcome = await run(routed("openai", asked=4), {"openai": model}, bus)
    assert isinstance(outcome, TaskCompleted) and outcome.embedding is not None
    assert (outcome.content, outcome.finish_reason, outcome.model, outcome.attempts) == (
        "",
        "stop",
        "openai/embed-openai",
        1,
    )
    assert (outcome.embedding.count, outcome.embedding.dimensions) == (3, 4)
    assert vectors.unpack(outcome.embedding) == answer.vectors
    assert outcome.usage.prompt_tokens == 17 and outcome.charged == []
    [call] = model.calls
    assert (call.model, list(call.inputs), call.dimensions, call.timeout_s) == ("embed-openai", TEXTS, 4, 5)
    [(attempt, record)] = bus.calls
    assert (attempt, record.outcome, record.usage.prompt_tokens, record.billable) == (1, "ok", 17, False)


async def test_falls_through_to_the_next_model_of_the_space_and_records_every_attempt() -> None:
    bus = Bus()
    down = ScriptedEmbedder(fails("overloaded", "503 from upstream"))
    outcome = await run(
        routed("openai", "azure"), {"openai": down, "azure": ScriptedEmbedder(embedding_reply(3))}, bus
    )
    assert isinstance(outcome, TaskCompleted) and outcome.provider == "azure" and outcome.attempts == 3
    assert [(n, c.provider, c.outcome) for n, c in bus.calls] == [
        (1, "openai", "overloaded"),
        (2, "openai", "overloaded"),  # retried once
        (3, "azure", "ok"),
    ]
    assert [c.model for c in down.calls] == ["embed-openai"] * 2


async def test_every_candidate_failing_is_a_task_failure_naming_each() -> None:
    bus = Bus()
    outcome = await run(
        routed("openai", "azure"),
        {"openai": ScriptedEmbedder(fails("auth")), "azure": ScriptedEmbedder(fails("timeout"))},
        bus,
    )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_timeout"
    assert "openai/embed-openai: auth" in outcome.error_message and outcome.attempts == 3
    assert outcome.charged == []  # failed calls cost nothing


async def test_a_provider_this_executor_cannot_call_is_skipped_without_a_record() -> None:
    bus = Bus()
    outcome = await run(routed("gemini", "openai"), {"openai": ScriptedEmbedder(embedding_reply(3))}, bus)
    assert isinstance(outcome, TaskCompleted) and outcome.provider == "openai" and outcome.attempts == 1
    assert [c.provider for _, c in bus.calls] == ["openai"]


async def test_a_provider_without_embeddings_is_passed_over_unsent_and_its_breaker_untouched() -> None:
    breakers = LocalBreakers(BreakerConfig(failure_threshold=1))
    chat_only = ScriptedProvider(reply("hi"))
    providers: dict[str, Provider] = {"anthropic": chat_only, "openai": ScriptedEmbedder(embedding_reply(3))}
    bus = Bus()
    outcome = await run(routed("anthropic", "openai"), providers, bus, breakers=breakers)
    assert isinstance(outcome, TaskCompleted) and outcome.provider == "openai"
    assert chat_only.calls == [] and [c.provider for _, c in bus.calls] == ["openai"]
    assert await breakers.allow("anthropic/embed-anthropic")  # closed: nothing was held against it
    alone = await run(routed("anthropic"), {"anthropic": chat_only}, Bus())
    assert isinstance(alone, TaskFailed) and alone.error_code == "provider_bad_request"
    assert "serves no embeddings" in alone.error_message


async def test_an_open_breaker_skips_the_candidate() -> None:
    breakers = LocalBreakers(BreakerConfig(failure_threshold=2))
    down = ScriptedEmbedder(fails("overloaded"))
    providers: dict[str, Provider] = {"openai": down, "azure": ScriptedEmbedder(embedding_reply(3))}
    await run(routed("openai", "azure"), providers, Bus(), breakers=breakers)
    bus = Bus()
    outcome = await run(routed("openai", "azure"), providers, bus, breakers=breakers)
    assert isinstance(outcome, TaskCompleted) and len(down.calls) == 2
    assert [c.provider for _, c in bus.calls] == ["azure"]


async def test_a_task_past_its_deadline_ends_expired_without_a_call() -> None:
    model = ScriptedEmbedder(embedding_reply(3))
    past = datetime.now(UTC) - timedelta(seconds=1)
    outcome = await run(routed("openai", deadline=past), {"openai": model}, Bus())
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_expired", outcome
    assert model.calls == []


async def test_rate_limits_count_the_inputs_tokens_only() -> None:
    """A chat call reserves its output too (256 tokens when it names no max_tokens); embeddings have
    none: 3 short inputs (~11 tokens estimated) are admitted while 11 of 20 tokens a minute are left, and
    each call keeps the 6 the provider counted: two such calls fit, a third not."""
    limits = LocalRateLimits({"openai": Limit(tpm=20)})
    model = ScriptedEmbedder(embedding_reply(3))
    for _ in range(2):
        done = await run(routed("openai"), {"openai": model}, Bus(), limits=limits)
        assert isinstance(done, TaskCompleted)
    third = await run(routed("openai"), {"openai": model}, Bus(), limits=limits)  # 8 left: short of 11
    assert isinstance(third, TaskFailed) and third.error_code == "provider_rate_limited"
    assert len(model.calls) == 2


def _with_nan(answer: EmbeddingReply) -> EmbeddingReply:
    return replace(answer, vectors=struct.pack("<f", float("nan")) + answer.vectors[4:])


@pytest.mark.parametrize(
    ("wrong", "fault"),
    [
        (embedding_reply(3, 8), "vectors of 8 numbers, not 4"),
        (embedding_reply(2, 4), "2 vectors for 3 inputs"),
        (_with_nan(embedding_reply(3, 4)), "not finite"),
        (replace(embedding_reply(3, 4), vectors=b"\0" * 20), "20 bytes are not 3 vectors"),
    ],
)
async def test_a_wrong_reply_is_billed_and_the_next_model_answers(wrong: EmbeddingReply, fault: str) -> None:
    bus = Bus()
    bad = ScriptedEmbedder(wrong)
    outcome = await run(
        routed("openai", "azure"), {"openai": bad, "azure": ScriptedEmbedder(embedding_reply(3))}, bus
    )
    assert isinstance(outcome, TaskCompleted) and outcome.provider == "azure"
    assert len(bad.calls) == 1  # not retried: the model would answer so again
    records = {c.provider: c for _, c in bus.calls}
    # the wrong answer was a call that succeeded and was paid for: billed beside the result
    assert records["openai"].outcome == "ok" and records["openai"].billable
    assert outcome.charged == [ChargedCall(model="openai/embed-openai", usage=wrong.usage)]
    assert not records["azure"].billable
    alone = await run(routed("openai"), {"openai": ScriptedEmbedder(wrong)}, Bus())
    assert isinstance(alone, TaskFailed) and alone.error_code == "provider_bad_response"
    assert fault in alone.error_message and alone.charged == [
        ChargedCall(model="openai/embed-openai", usage=wrong.usage)
    ]


async def test_a_model_the_policy_does_not_size_is_taken_at_its_own_length() -> None:
    outcome = await run(
        routed("openai", dimensions=None), {"openai": ScriptedEmbedder(embedding_reply(3, 7))}, Bus()
    )
    assert isinstance(outcome, TaskCompleted) and outcome.embedding is not None
    assert outcome.embedding.dimensions == 7


async def test_vectors_larger_than_a_result_fail_the_task_and_the_call_is_billed() -> None:
    dims = 8192  # a pass-through model's length: 1,025 vectors are 33.6 MB, over the 32 MiB a result holds
    count = vectors.most_inputs(dims) + 1
    texts = [f"text {i}" for i in range(count)]
    answer = embedding_reply(count, dims, prompt_tokens=900)
    bus = Bus()
    outcome = await run(
        routed("openai", dimensions=dims, texts=texts), {"openai": ScriptedEmbedder(answer)}, bus
    )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "embedding_result_too_large"
    assert f"send at most {vectors.most_inputs(dims)} inputs" in outcome.error_message
    [(_, record)] = bus.calls
    assert record.outcome == "ok" and record.billable
    assert outcome.charged == [ChargedCall(model="openai/embed-openai", usage=answer.usage)]


async def test_vectors_that_cannot_be_kept_fail_the_task_and_the_call_is_billed() -> None:
    asked: list[tuple[int, int, str]] = []

    async def full(
        raw: bytes, *, count: int, dimensions: int, name: str, batch: bool = False
    ) -> EmbeddingResult:
        asked.append((count, dimensions, name))
        raise vectors.VectorsNotKept("the bucket is full")

    answer = embedding_reply(3, 4, prompt_tokens=17)
    bus = Bus()
    outcome = await run(routed("openai", asked=4), {"openai": ScriptedEmbedder(answer)}, bus, keep=full)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "embedding_result_unavailable"
    assert "could not be kept for delivery: the bucket is full" in outcome.error_message
    assert asked == [(3, 4, "acme.t1")]  # the object's name: tenant and task
    [(_, record)] = bus.calls
    assert record.outcome == "ok" and record.billable
    assert outcome.charged == [ChargedCall(model="openai/embed-openai", usage=answer.usage)]


async def test_the_result_is_what_keep_made_of_the_vectors() -> None:
    batches: list[bool] = []

    async def stored(
        raw: bytes, *, count: int, dimensions: int, name: str, batch: bool = False
    ) -> EmbeddingResult:
        batches.append(batch)
        return EmbeddingResult(count=count, dimensions=dimensions, sha256="0" * 64, object=name)

    answer = embedding_reply(3, 4)
    outcome = await run(routed("openai", asked=4), {"openai": ScriptedEmbedder(answer)}, Bus(), keep=stored)
    assert isinstance(outcome, TaskCompleted) and outcome.embedding is not None
    assert (outcome.embedding.object, outcome.embedding.data, outcome.charged) == ("acme.t1", None, [])
    line = routed("openai", asked=4)
    line = line.model_copy(update={"task": line.task.model_copy(update={"batch": True})})
    await run(line, {"openai": ScriptedEmbedder(answer)}, Bus(), keep=stored)
    assert batches == [False, True]  # a batch line's vectors are kept for its batch


class Hangs:
    """An embedding model that never answers (until its call is cut)."""

    def __init__(self) -> None:
        self.called = asyncio.Event()

    async def request(self, call: ProviderCall) -> Reply:
        raise AssertionError("asked for embeddings only")

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_task_cancelled_before_it_starts_calls_nobody() -> None:
    model = ScriptedEmbedder(embedding_reply(3))
    outcome = await run(routed("openai"), {"openai": model}, Bus(), cancelled=lambda: True)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_cancelled"
    assert model.calls == []


async def test_a_cancellation_cuts_the_call_and_bills_its_inputs() -> None:
    asked = [False]
    bus, upstream = Bus(), Hangs()
    running = asyncio.create_task(
        run(routed("openai"), {"openai": upstream}, bus, cancelled=lambda: asked[0])
    )
    await asyncio.wait_for(upstream.called.wait(), 5)
    asked[0] = True
    running.cancel()
    outcome = await running
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "task_cancelled"
    [(_, record)] = bus.calls
    assert (record.outcome, record.billable, record.usage_estimated) == ("cancelled", True, True)
    assert record.usage.prompt_tokens > 0 and record.usage.completion_tokens == 0
    assert outcome.charged == [ChargedCall(model=record.model, usage=record.usage)]


async def test_a_shutdown_goes_on_up_and_hands_over_what_it_was_billed_for() -> None:
    cut: list[list[ChargedCall]] = []
    bus, upstream = Bus(), Hangs()
    running = asyncio.create_task(run(routed("openai"), {"openai": upstream}, bus, on_cut=cut.append))
    await asyncio.wait_for(upstream.called.wait(), 5)
    running.cancel()  # nobody asked for this task to stop: the executor is stopping
    with pytest.raises(asyncio.CancelledError):
        await running
    [(_, record)] = bus.calls
    assert record.outcome == "cancelled" and cut == [[ChargedCall(model=record.model, usage=record.usage)]]


async def test_a_chat_task_is_not_run_as_embeddings() -> None:
    from tests.unit.executor.test_execution import routed as chat_task

    with pytest.raises(TypeError, match="chat task"):
        await run(chat_task("openai"), {"openai": ScriptedEmbedder(embedding_reply(1))}, Bus())
