"""Cascade and parallel through `execute`: who answers, what is escalated or cancelled, what is billable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from switchyard.common.events import (
    ChargedCall,
    ChatMessage,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
)
from switchyard.executor.execution import ExecutionPolicy, execute
from switchyard.executor.providers.base import Provider, ProviderCall, Reply
from switchyard.executor.providers.testing import ScriptedProvider, fails, reply
from switchyard.executor.resilience.breaker import LocalBreakers
from switchyard.executor.resilience.retry import RetryPolicy

pytestmark = pytest.mark.unit
FAST = ExecutionPolicy(
    retry=RetryPolicy(max_retries=0, base_s=0.001, cap_s=0.002), call_timeout_s=5, task_deadline_s=10
)
CHECKS = ["json", "code", "refusal", "truncation", "confidence"]


def routed(
    *providers: str,
    strategy: str = "single",
    task_type: str = "qa",
    confidence: float = 0.9,
    fan_out: int = 1,
    mode: str = "race",
    **request: Any,
) -> TaskRouted:
    task = TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        request=ChatRequest(messages=[ChatMessage(role="user", content="Do the thing")], **request),
        submitted_at=datetime.now(UTC),
    )
    candidates = [
        RouteCandidate(model=f"{p}/m", provider=p, upstream_model="m", tier="fast") for p in providers
    ]
    decision = RoutingDecision(
        strategy=strategy,  # type: ignore[arg-type]
        tier="fast",
        candidates=candidates,
        policy_version="t",
        fan_out=fan_out,
        parallel_mode=mode,  # type: ignore[arg-type]
        checks=CHECKS if strategy != "single" else [],
        min_confidence=0.5,
    )
    classification = Classification(
        type=task_type, confidence=confidence, complexity=0.5, urgency=0.5, model_version="t", latency_ms=1
    )
    return TaskRouted(task=task, classification=classification, decision=decision)


async def run(task: TaskRouted, providers: dict[str, Provider]) -> tuple[object, list[ProviderCallRecorded]]:
    calls: list[ProviderCallRecorded] = []

    async def report(_attempt: int, record: ProviderCallRecorded) -> None:
        calls.append(record)

    outcome = await execute(task, providers=providers, breakers=LocalBreakers(), policy=FAST, report=report)
    return outcome, calls


def charged(calls: list[ProviderCallRecorded]) -> list[ChargedCall]:
    """What billing charges besides the delivered answer: the calls reported billable."""
    return [ChargedCall(model=c.model, usage=c.usage) for c in calls if c.billable]


class Slow:
    """Answers after `delay` seconds; remembers whether it was cancelled."""

    def __init__(self, delay: float, text: str = "slow answer") -> None:
        self.delay, self.text, self.cancelled = delay, text, False

    async def request(self, call: ProviderCall) -> Reply:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return reply(self.text)


@pytest.mark.parametrize(
    ("task_type", "cheap_answer", "request_extra", "check"),
    [
        ("extraction", "name: Ada", {"response_format": {"type": "json_object"}}, "json"),
        ("coding", "```python\ndef f(:\n  pass\n```", {}, "code"),
        ("qa", "I'm sorry, but I can't help with that.", {}, "refusal"),
        ("qa", "The answer is", {}, "truncation"),
    ],
)
async def test_cascade_escalates_when_a_check_fails_and_bills_the_refused_answer(
    task_type: str, cheap_answer: str, request_extra: dict[str, Any], check: str
) -> None:
    finish = "length" if check == "truncation" else "stop"
    cheap = ScriptedProvider(reply(cheap_answer, finish_reason=finish))
    strong = ScriptedProvider(reply('{"name": "Ada"}'))
    task = routed("cheap", "strong", strategy="cascade", task_type=task_type, **request_extra)
    outcome, calls = await run(task, {"cheap": cheap, "strong": strong})
    assert isinstance(outcome, TaskCompleted) and outcome.model == "strong/m"
    assert [(c.model, c.outcome, c.billable) for c in calls] == [
        ("cheap/m", "ok", True),  # spent but refused: billed as a call
        ("strong/m", "ok", False),  # delivered: billed with the result
    ]
    assert outcome.charged == charged(calls)  # so the gateway's budget counter settles at billing's sum


async def test_cascade_keeps_a_good_cheap_answer() -> None:
    strong = ScriptedProvider(reply("never asked"))
    task = routed("cheap", "strong", strategy="cascade", response_format={"type": "json_object"})
    outcome, calls = await run(task, {"cheap": ScriptedProvider(reply('{"ok": true}')), "strong": strong})
    assert isinstance(outcome, TaskCompleted) and outcome.model == "cheap/m"
    assert not strong.calls and [c.billable for c in calls] == [False] and outcome.charged == []


async def test_cascade_validates_the_json_schema() -> None:
    schema = {"type": "object", "required": ["age"], "properties": {"age": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    cheap = ScriptedProvider(reply('{"age": "forty"}'))
    task = routed("cheap", "strong", strategy="cascade", response_format=fmt)
    outcome, _ = await run(task, {"cheap": cheap, "strong": ScriptedProvider(reply('{"age": 40}'))})
    assert isinstance(outcome, TaskCompleted) and outcome.content == '{"age": 40}'


async def test_a_failing_cheap_model_falls_through_in_a_cascade() -> None:
    task = routed("cheap", "strong", strategy="cascade")
    providers: dict[str, Provider] = {
        "cheap": ScriptedProvider(fails("overloaded")),
        "strong": ScriptedProvider(reply("fine")),
    }
    outcome, calls = await run(task, providers)
    assert isinstance(outcome, TaskCompleted) and outcome.model == "strong/m"
    assert [(c.outcome, c.billable) for c in calls] == [("overloaded", False), ("ok", False)]


async def test_the_last_answer_is_delivered_when_every_step_fails_a_check() -> None:
    task = routed("cheap", "strong", strategy="cascade")
    refusal = reply("I cannot help with that.")
    outcome, _ = await run(task, {"cheap": ScriptedProvider(refusal), "strong": ScriptedProvider(refusal)})
    assert isinstance(outcome, TaskCompleted) and outcome.model == "strong/m"


async def test_a_race_takes_the_first_answer_cancels_the_loser_and_bills_it() -> None:
    fast, slow = Slow(0.01, "fast"), Slow(5.0)
    outcome, calls = await run(
        routed("fast", "slow", strategy="parallel", fan_out=2), {"fast": fast, "slow": slow}
    )
    assert isinstance(outcome, TaskCompleted) and outcome.content == "fast"
    assert slow.cancelled
    by_model = {c.model: c for c in calls}
    assert by_model["fast/m"].outcome == "ok" and not by_model["fast/m"].billable
    loser = by_model["slow/m"]
    assert loser.outcome == "cancelled" and loser.billable and loser.usage_estimated
    assert loser.usage.prompt_tokens > 0
    assert outcome.charged == charged(calls) == [ChargedCall(model="slow/m", usage=loser.usage)]


async def test_a_race_falls_back_to_the_rest_when_both_racers_fail() -> None:
    providers: dict[str, Provider] = {
        "a": ScriptedProvider(fails("overloaded")),
        "b": ScriptedProvider(fails("timeout")),
        "c": ScriptedProvider(reply("third")),
    }
    outcome, _ = await run(routed("a", "b", "c", strategy="parallel", fan_out=2), providers)
    assert isinstance(outcome, TaskCompleted) and outcome.model == "c/m"


async def test_best_of_keeps_the_answer_that_passes_the_checks_and_bills_the_other() -> None:
    providers: dict[str, Provider] = {
        "a": ScriptedProvider(reply("I'm sorry, but I cannot help with that.")),
        "b": ScriptedProvider(reply("Here is a complete and useful answer.")),
    }
    task = routed("a", "b", strategy="parallel", fan_out=2, mode="best_of")
    outcome, calls = await run(task, providers)
    assert isinstance(outcome, TaskCompleted) and outcome.model == "b/m"
    assert {c.model: c.billable for c in calls} == {"a/m": True, "b/m": False}
    assert [c.model for c in outcome.charged] == ["a/m"] and outcome.charged == charged(calls)


async def test_a_content_policy_refusal_is_not_shopped_around() -> None:
    providers: dict[str, Provider] = {
        "a": ScriptedProvider(fails("content_policy")),
        "b": ScriptedProvider(reply("ok")),
    }
    outcome, _ = await run(routed("a", "b", strategy="cascade"), providers)
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "provider_content_policy"
