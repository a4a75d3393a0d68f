"""The provider calls of one task, reported as events, each flagged for billing.

A failed call is reported at once. An answer is held until the strategy knows whether it was delivered:
the delivered answer is charged through the task's result; every other answer (a parallel loser, a
cascade step that failed its checks), every cancelled call and every call that failed after its text
began is `billable`, so billing charges those
tokens as well, and nothing is charged twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from switchyard.common.events import ChargedCall, ProviderCallRecorded, TaskRouted, Usage
from switchyard.common.logs import redact
from switchyard.executor.providers.recording import CallRecord

Report = Callable[[int, ProviderCallRecorded], Awaitable[None]]


class CallBook:
    def __init__(self, routed: TaskRouted, report: Report, *, carried: Sequence[ChargedCall] = ()) -> None:
        self._routed = routed
        self._report = report
        self.attempts = 0
        self._held: list[tuple[int, CallRecord]] = []
        self.spent: list[CallRecord] = []  # answers and cancelled calls: what cost tokens
        # what was reported billable (billed besides the result), from earlier runs cut by a stop too
        self.charged: list[ChargedCall] = list(carried)
        self.carried = len(carried)  # the first this many of `charged`
        self._spans: list[tuple[float, float]] = []  # (start, end) of each call, perf_counter seconds

    async def on_call(self, record: CallRecord) -> None:
        self.attempts += 1
        end = time.perf_counter()
        self._spans.append((end - record.latency_ms / 1000.0, end))
        if record.outcome == "ok":
            self._held.append((self.attempts, record))
            return
        # a cancelled call, or one that failed after its text began (an estimate of what it was charged)
        spent = record.usage is not None and record.usage.total_tokens > 0
        if spent:
            self.spent.append(record)
        await self._reported(self.attempts, record, billable=spent)

    async def settle(self, delivered_model: str | None) -> None:
        """Reports the held answers: the one from `delivered_model` is charged with the result."""
        held, self._held = self._held, []
        for attempt, record in held:
            self.spent.append(record)
            await self._reported(attempt, record, billable=record.model != delivered_model)

    async def _reported(self, attempt: int, record: CallRecord, *, billable: bool) -> None:
        await self._report(attempt, self._event(attempt, record, billable=billable))
        if billable and record.usage is not None:
            self.charged.append(ChargedCall(model=record.model, usage=record.usage))

    def provider_ms(self) -> float:
        """Wall time with at least one provider call in flight (parallel calls' overlap counted once)."""
        return round(waited_ms(self._spans), 3)

    def _event(self, attempt: int, record: CallRecord, *, billable: bool) -> ProviderCallRecorded:
        task = self._routed.task
        return ProviderCallRecorded(
            task_id=task.task_id,
            tenant_id=task.tenant_id,
            user_id=task.user_id,
            api_key_id=task.api_key_id,
            attempt=attempt,
            provider=record.provider,
            model=record.model,
            outcome=record.outcome,
            error=None if record.error is None else redact(record.error),
            latency_ms=record.latency_ms,
            ttft_ms=record.ttft_ms,
            usage=record.usage or Usage(),
            billable=billable,
            usage_estimated=record.usage_estimated,
        )


def waited_ms(spans: list[tuple[float, float]]) -> float:
    """The length of the union of (start, end) spans in seconds, in milliseconds."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total * 1000.0
