"""A task under a hard budget (`TaskBudget`): each call is sent the budget's output cap (the lower of it
and the client's `max_tokens`, `ProviderCall.from_request`), fitted into what each candidate's context
window leaves after the prompt, so a cap the client never asked for does not push a call past a model's
window (a compatible server such as vLLM refuses prompt + max_tokens beyond it, where it was sent no
`max_tokens` before). A run that redoes a task a stop cut (`carried.py`) is sent what the cut run left of
the cap, and, where the reservation covers one billed call, so is a retry or a fallback after a call
billed besides the answer (a timeout after the request went out: its prompt), `Spending`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace

from switchyard.common.errors import ProviderError
from switchyard.common.events import ChargedCall, RouteCandidate, TaskRouted
from switchyard.executor.providers.base import (
    EmbeddingCall,
    EmbeddingReply,
    Provider,
    ProviderCall,
    Reply,
    StreamPart,
    stream_any,
)
from switchyard.executor.providers.errors import BUDGET_SPENT
from switchyard.executor.providers.recording import embedder_of
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
    return max(max([budget.max_output_tokens, *budget.model_caps.values()]) - tokens(carried), 0)


def own_cap(routed: TaskRouted, model: str, charged: Sequence[ChargedCall]) -> int | None:
    """What `model` may be sent (None: no hard budget): its own cap (`TaskBudget.model_caps`, a cheaper
    model's within the same reservation; else the budget's), less what `charged` was billed."""
    budget = routed.task.budget
    if budget is None:
        return None
    return budget.model_caps.get(model, budget.max_output_tokens) - tokens(charged)


def tokens(charged: Sequence[ChargedCall]) -> int:
    """What `charged` was billed, prompt tokens counted as output ones (a model's input price is at most
    its output price)."""
    return sum(c.usage.prompt_tokens + c.usage.completion_tokens for c in charged)


def spent(routed: TaskRouted, carried: Sequence[ChargedCall]) -> str | None:
    """Why the task may not be sent to a model again (None: it may): its earlier runs, cut by their
    executor's stop, spent what its hard budget reserved."""
    if cap(routed, carried) != 0:
        return None
    budget = routed.task.budget
    assert budget is not None
    return (
        f"the task's earlier run, cut by its executor's stop, was billed {tokens(carried)} tokens of the "
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


class Spending:
    """A candidate's calls under a hard budget: each is sent its model's own cap (`own_cap`) less what the
    calls billed besides the answer so far took of it (`charged`: where the reservation covers one billed
    call, a timeout's prompt before a retry or a fallback; earlier runs' calls); none when they left
    nothing (`budget_exceeded`, not sent: no limit, breaker or fallback is charged for it)."""

    def __init__(
        self,
        inner: Provider,
        routed: TaskRouted,
        model: str,
        charged: Callable[[], Sequence[ChargedCall]],
    ) -> None:
        self._inner = inner
        self._routed = routed
        self._model = model
        self._charged = charged

    def _capped(self, call: ProviderCall) -> ProviderCall:
        left = own_cap(self._routed, self._model, self._charged())
        if left is None:
            return call
        if left < 1:
            budget = self._routed.task.budget
            assert budget is not None
            error = ProviderError(
                f"the calls billed besides its answer ({tokens(self._charged())} tokens) spent the "
                f"{budget.max_output_tokens} its hard budget reserved: no further call was sent",
                kind=BUDGET_SPENT,
                retryable=False,
                sent=False,
            )
            error.code = "budget_exceeded"
            raise error
        return replace(call, max_tokens=left if call.max_tokens is None else min(call.max_tokens, left))

    async def request(self, call: ProviderCall) -> Reply:
        return await self._inner.request(self._capped(call))

    def stream(self, call: ProviderCall) -> AsyncGenerator[StreamPart, None]:
        capped = self._capped(call)
        own = getattr(self._inner, "stream", None)  # the inner's own, so that a cut reaches its recording
        parts: AsyncGenerator[StreamPart, None] = (
            own(capped) if own is not None else stream_any(self._inner, capped)
        )
        return parts

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        return await embedder_of(self._inner, call.model).embed(call)
