"""A task under a hard budget (`TaskBudget`): each call is sent the budget's output cap (the lower of it
and the client's `max_tokens`, `ProviderCall.from_request`), fitted into what each candidate's context
window leaves after the prompt, so a cap the client never asked for does not push a call past a model's
window (a compatible server such as vLLM refuses prompt + max_tokens beyond it, where it was sent no
`max_tokens` before). A run that redoes a task a stop cut (`carried.py`) is sent what the cut run left of
the cap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from switchyard.common.events import ChargedCall, RouteCandidate, TaskRouted
from switchyard.executor.resilience.fallback import Target

MakeTarget = Callable[[RouteCandidate], Target]


def cap(routed: TaskRouted, carried: Sequence[ChargedCall]) -> int | None:
    """The output cap the task's calls are sent (None: no hard budget): the budget's, less every token a
    run a stop cut was billed for (`carried`), prompt tokens counted as output ones (a model's input
    price is below its output price), so both runs stay within what was reserved. 0: the cut run spent
    it all, and a call, even of 1 token, would send the prompt again past the reservation (`spent`)."""
    budget = routed.task.budget
    if budget is None:
        return None
    spent = sum(c.usage.prompt_tokens + c.usage.completion_tokens for c in carried)
    return max(budget.max_output_tokens - spent, 0)


def spent(routed: TaskRouted, carried: Sequence[ChargedCall]) -> str | None:
    """Why the task may not be sent to a model again (None: it may): its earlier runs, cut by their
    executor's stop, spent what its hard budget reserved."""
    if cap(routed, carried) != 0:
        return None
    budget = routed.task.budget
    assert budget is not None
    used = sum(c.usage.prompt_tokens + c.usage.completion_tokens for c in carried)
    return (
        f"the task's earlier run, cut by its executor's stop, was billed {used} tokens of the "
        f"{budget.max_output_tokens} its hard budget reserved: it was not sent to a model again"
    )


def fitted(make: MakeTarget, routed: TaskRouted) -> MakeTarget:
    """`make`, its targets sent no more output than their window leaves after the prompt (the router's
    count) when the output cap is the budget's, not the client's; as is otherwise."""
    budget, request = routed.task.budget, routed.task.request
    asked = getattr(request, "max_tokens", None)
    if budget is None or (asked is not None and asked <= budget.max_output_tokens):
        return make
    prompt = routed.decision.estimated_prompt_tokens

    def fit(candidate: RouteCandidate) -> Target:
        target = make(candidate)
        window = candidate.context_window
        if window is None or window - prompt < 1:  # unknown, or no room at all: the provider says so
            return target
        return replace(target, max_tokens=window - prompt)

    return fit
