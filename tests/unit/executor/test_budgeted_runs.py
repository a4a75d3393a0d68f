"""A task under a hard budget (`TaskBudget`, set by the gateway's admission) runs within what its
reservation pays for: each call is sent the budget's output cap (the lower of it and the client's
`max_tokens`), a race runs no more racers and a cascade no more checked steps than the calls covered."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.common.errors import ProviderError
from switchyard.common.events import (
    ChargedCall,
    ProviderCallRecorded,
    TaskBudget,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    Usage,
)
from switchyard.executor.execution import execute
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.testing import ScriptedProvider, reply
from switchyard.executor.resilience.breaker import LocalBreakers
from tests.unit.executor.test_strategies import FAST, run
from tests.unit.executor.test_strategies import routed as unbudgeted

pytestmark = pytest.mark.unit


def routed(*providers: str, budget: TaskBudget | None, **extra: Any) -> TaskRouted:
    task = unbudgeted(*providers, **extra)
    return task.model_copy(update={"task": task.task.model_copy(update={"budget": budget})})


@pytest.mark.parametrize(("max_tokens", "sent"), [(None, 700), (300, 300), (5000, 700)])
async def test_each_call_is_sent_the_lower_of_the_budgets_cap_and_the_clients(
    max_tokens: int | None, sent: int
) -> None:
    provider = ScriptedProvider(reply("an answer"))
    await run(routed("p", budget=TaskBudget(max_output_tokens=700), max_tokens=max_tokens), {"p": provider})
    assert [c.max_tokens for c in provider.calls] == [sent]


async def test_without_a_hard_budget_nothing_is_capped() -> None:
    provider = ScriptedProvider(reply("an answer"))
    await run(routed("p", budget=None), {"p": provider})
    assert [c.max_tokens for c in provider.calls] == [None]


async def test_a_cascade_stops_escalating_at_the_answers_the_budget_covers() -> None:
    not_json = [ScriptedProvider(reply("not json")) for _ in range(2)]
    third = ScriptedProvider(reply('{"ok": true}'))
    providers = {"a": not_json[0], "b": not_json[1], "c": third}
    json = {"response_format": {"type": "json_object"}}
    covered = routed(
        "a", "b", "c", budget=TaskBudget(max_output_tokens=100, calls=2), strategy="cascade", **json
    )
    outcome, calls = await run(covered, providers)
    assert isinstance(outcome, TaskCompleted) and outcome.model == "b/m"  # the last answer paid for
    assert not third.calls and [c.billable for c in calls] == [True, False]

    free = routed("a", "b", "c", budget=None, strategy="cascade", **json)
    outcome, _ = await run(
        free, {"a": ScriptedProvider(reply("x")), "b": ScriptedProvider(reply("y")), "c": third}
    )
    assert isinstance(outcome, TaskCompleted) and outcome.model == "c/m"


async def test_a_race_runs_no_more_racers_than_the_budget_covers() -> None:
    a, b = ScriptedProvider(reply("first")), ScriptedProvider(reply("second"))
    one = routed("a", "b", budget=TaskBudget(max_output_tokens=100, calls=1), strategy="parallel", fan_out=2)
    outcome, calls = await run(one, {"a": a, "b": b})
    assert isinstance(outcome, TaskCompleted) and len(calls) == 1 and not b.calls


@pytest.mark.parametrize(("max_tokens", "sent"), [(None, 200), (5000, 200), (300, 300)])
async def test_a_cap_of_the_budgets_is_fitted_into_the_models_window(
    max_tokens: int | None, sent: int
) -> None:
    """A cap the client never asked for does not push the call past the model's window (the prompt,
    800 tokens as the router counted it, leaves 200 of 1,000); the client's own `max_tokens` is its own."""
    provider = ScriptedProvider(reply("an answer"))
    task = routed("p", budget=TaskBudget(max_output_tokens=700), max_tokens=max_tokens)
    windowed = [c.model_copy(update={"context_window": 1000}) for c in task.decision.candidates]
    decision = task.decision.model_copy(update={"candidates": windowed, "estimated_prompt_tokens": 800})
    await run(task.model_copy(update={"decision": decision}), {"p": provider})
    assert [c.max_tokens for c in provider.calls] == [sent]


async def test_a_redone_run_is_sent_what_the_cut_run_left_of_the_cap() -> None:
    """A run a stop cut was billed 100 prompt and 250 output tokens (`carried`): the run that redoes the
    task is sent 700 - 350, so both stay within what the budget reserved."""
    provider = ScriptedProvider(reply("an answer"))
    carried = [ChargedCall(model="p/m", usage=Usage(prompt_tokens=100, completion_tokens=250))]
    task = routed("p", budget=TaskBudget(max_output_tokens=700))
    outcome = await execute(
        task,
        providers={"p": provider},
        breakers=LocalBreakers(),
        policy=FAST,
        report=_ignore,
        carried=carried,
    )
    assert isinstance(outcome, TaskCompleted) and outcome.charged == carried
    assert [c.max_tokens for c in provider.calls] == [350]


async def _ignore(_attempt: int, _record: ProviderCallRecorded) -> None:
    return None


async def test_a_redone_run_whose_cut_run_spent_the_cap_is_not_sent_again() -> None:
    """A cut run billed 100 prompt and 600 output tokens of a 700 cap: the reservation is spent, so the
    run that redoes the task sends nothing (it sent 1 output token and the prompt again, past the
    reservation) and fails `budget_exceeded`, the cut run's calls charged (the gateway settles them)."""
    provider = ScriptedProvider(reply("an answer"))
    carried = [ChargedCall(model="p/m", usage=Usage(prompt_tokens=100, completion_tokens=600))]
    task = routed("p", budget=TaskBudget(max_output_tokens=700))
    outcome = await execute(
        task,
        providers={"p": provider},
        breakers=LocalBreakers(),
        policy=FAST,
        report=_ignore,
        carried=carried,
    )
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "budget_exceeded", outcome
    assert outcome.charged == carried and provider.calls == []


def _timed_out() -> ProviderError:
    """A call we stopped waiting for after it went out: billed for its prompt (estimated)."""
    return provider_error("timeout", "no answer in time (ReadTimeout)", abandoned=True)


async def _fallen_back(budget: TaskBudget) -> tuple[TaskCompleted | TaskFailed, ScriptedProvider, int]:
    """`p` times out (billed its prompt), `q` answers: the outcome, `q`, and `p`'s billed prompt."""
    first, second = ScriptedProvider(_timed_out()), ScriptedProvider(reply("an answer"))
    calls: list[ProviderCallRecorded] = []

    async def report(_attempt: int, record: ProviderCallRecorded) -> None:
        calls.append(record)

    outcome = await execute(
        routed("p", "q", budget=budget),
        providers={"p": first, "q": second},
        breakers=LocalBreakers(),
        policy=FAST,
        report=report,
    )
    billed = [c for c in calls if c.billable]
    assert [(c.model, c.outcome) for c in billed] == [("p/m", "timeout")]
    return outcome, second, billed[0].usage.prompt_tokens


async def test_a_fallback_after_a_billed_timeout_is_sent_what_the_timeout_left_of_the_cap() -> None:
    """The reservation covers one call; the timed-out call's prompt was billed besides the answer, so the
    fallback is sent the cap less it (it was sent all 700: the task could pass the reservation)."""
    outcome, second, prompt = await _fallen_back(TaskBudget(max_output_tokens=700))
    assert isinstance(outcome, TaskCompleted) and prompt > 0
    assert [c.max_tokens for c in second.calls] == [700 - prompt]


async def test_a_fallback_the_billed_timeout_left_nothing_is_not_sent() -> None:
    outcome, second, _ = await _fallen_back(TaskBudget(max_output_tokens=1))
    assert isinstance(outcome, TaskFailed) and outcome.error_code == "budget_exceeded", outcome
    assert second.calls == [] and [c.model for c in outcome.charged] == ["p/m"]


@pytest.mark.parametrize(
    ("max_tokens", "sent"), [(None, [500, 2000]), (1000, [500, 1000]), (300, [300, 300])]
)
async def test_a_cheaper_candidate_is_sent_its_own_cap(max_tokens: int | None, sent: list[int]) -> None:
    """The gateway priced 500 tokens at the dearest candidate (`p`) and found `q` pays for 2,000 within
    the same reservation (`model_caps`): `q`, the fallback, is sent up to that, never past the client's
    own `max_tokens` (it was sent 500, the dearest's cap)."""
    p = ScriptedProvider(provider_error("overloaded", "busy", retryable=False))
    q = ScriptedProvider(reply("an answer"))
    budget = TaskBudget(max_output_tokens=500, model_caps={"q/m": 2000})
    outcome, _ = await run(routed("p", "q", budget=budget, max_tokens=max_tokens), {"p": p, "q": q})
    assert isinstance(outcome, TaskCompleted) and outcome.model == "q/m"
    assert [c.max_tokens for c in [*p.calls, *q.calls]] == sent
