from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram

from switchyard.common import tracing
from switchyard.common.events import ProviderCallRecorded, TaskCompleted, TaskFailed
from switchyard.common.events.tasks import Strategy
from switchyard.common.metrics import zero
from switchyard.executor import quality
from switchyard.executor.providers.errors import OPERATOR_FAILURES
from switchyard.executor.providers.recording import CallRecord
from switchyard.executor.resilience.breaker import BreakerState

# to the longest call a client's timeout may ask (SWITCHYARD_REQUEST_TIMEOUT_MAX_S, 600 s by default): a
# reasoning model's answer sent whole may take minutes
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

CALLS = Counter(
    "switchyard_executor_provider_calls_total", "Provider calls by outcome", ["provider", "model", "outcome"]
)
CALL_SECONDS = Histogram(
    "switchyard_executor_provider_call_seconds", "Provider call latency", ["provider"], buckets=_SECONDS
)
TTFT_SECONDS = Histogram(
    "switchyard_executor_provider_ttft_seconds",
    "Time to the first streamed token",
    ["provider"],
    buckets=_SECONDS,
)
TASKS = Counter(
    "switchyard_executor_tasks_total",
    "Tasks by outcome: completed, failed, cancelled, expired (its bound passed before it ran)",
    ["outcome"],
)
BREAKER_STATE = Gauge(
    "switchyard_executor_breaker_state", "Circuit breaker: 0 closed, 1 half open, 2 open", ["breaker"]
)

_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def outcome_label(outcome: TaskCompleted | TaskFailed) -> str:
    if isinstance(outcome, TaskCompleted):
        return "completed"
    return {"task_cancelled": "cancelled", "task_expired": "expired"}.get(outcome.error_code, "failed")


def observe_call(record: ProviderCallRecorded) -> None:
    CALLS.labels(record.provider, record.model, record.outcome).inc()
    linked = tracing.exemplar()  # the task's span (recorded in it): its trace, from the bucket
    CALL_SECONDS.labels(record.provider).observe(record.latency_ms / 1000.0, linked)
    if record.ttft_ms is not None:
        TTFT_SECONDS.labels(record.provider).observe(record.ttft_ms / 1000.0, linked)


def breaker_changed(key: str, state: BreakerState) -> None:
    BREAKER_STATE.labels(key).set(_STATE_VALUE[state])


CASCADE = Counter(
    "switchyard_executor_cascade_total",
    "Cascaded tasks by the step whose answer was accepted (0: the cheap first one)",
    ["accepted_step"],
)
ESCALATIONS = Counter(
    "switchyard_executor_cascade_escalations_total", "Answers refused by a quality check", ["check"]
)
SPENT_TOKENS = Counter(
    "switchyard_executor_spent_tokens_total",
    "Tokens spent per strategy, delivered or not (parallel losers, escalated steps)",
    ["strategy", "delivered"],
)
ACCEPTED = Counter(
    "switchyard_executor_accepted_answers_total", "Answers delivered, by strategy", ["strategy"]
)


def observe_strategy(strategy: str, escalations: list[str], spent: list[CallRecord], delivered: str) -> None:
    """Escalation rate = cascade escalations / cascaded tasks; cost per accepted answer = the spent
    tokens (priced by billing) / accepted answers."""
    ACCEPTED.labels(strategy).inc()
    if strategy == "cascade":
        CASCADE.labels(str(len(escalations))).inc()
        for why in escalations:
            for problem in why.split(": ", 1)[1].split("; "):
                # a problem's text may quote the client's schema ("; " and ":" included): only a check's
                # name becomes a label
                if (check := problem.split(":", 1)[0]) in quality.CHECKS:
                    ESCALATIONS.labels(check).inc()
    for record in spent:
        tokens = record.usage.total_tokens if record.usage else 0
        SPENT_TOKENS.labels(strategy, str(record.model == delivered and record.outcome == "ok")).inc(tokens)


def at_start(models: Iterable[tuple[str, str]]) -> None:
    """The counters' label values known at start, at 0. Provider calls: per (provider, model) of the policy
    this executor has the provider of, `ok` and the failures that stay until an operator acts (their
    first one alerts: SwitchyardProviderOutOfCredit); the other outcomes are born with their first call
    (every error kind of every model would be a dozen series a model)."""
    strategies = get_args(Strategy)
    zero(CALLS, [(*model, outcome) for model in models for outcome in ("ok", *sorted(OPERATOR_FAILURES))])
    zero(TASKS, [("completed",), ("failed",), ("cancelled",), ("expired",)])
    zero(ACCEPTED, [(strategy,) for strategy in strategies])
    zero(SPENT_TOKENS, [(strategy, delivered) for strategy in strategies for delivered in ("True", "False")])
    zero(ESCALATIONS, [(check,) for check in quality.CHECKS])
