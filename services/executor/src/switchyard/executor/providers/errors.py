"""One error taxonomy for every provider; it decides retry, fallback or fail.

| kind             | retry the same model | fall back to the next candidate |
| ---------------- | -------------------- | ------------------------------- |
| rate_limited     | yes (Retry-After)    | yes                             |
| overloaded       | yes                  | yes                             |
| timeout          | yes                  | yes                             |
| network          | yes                  | yes                             |
| bad_response     | yes                  | yes                             |
| auth             | no                   | yes (another provider's key)    |
| quota_exhausted  | no                   | yes (another provider's account) |
| bad_request      | no                   | yes (another model may accept)  |
| context_too_long | no                   | yes (a larger context window)   |
| content_policy   | no                   | no: shopping a refused prompt around providers is not ours to do |
| circuit_open     | no                   | yes (the call was not made)     |

`quota_exhausted`: the provider account behind the executor's key is out of credit or over its billing
limit (OpenAI's `insufficient_quota`, Anthropic's `billing_error`, "credit balance is too low" and "reached
your specified API usage limits", a 402 Payment Required, Gemini's depleted prepay credits). Not a rate
limit: no wait makes it pass, only an operator topping the account up. Like `auth`, it stays until
someone acts, and counts against the provider's health (breakers, routing). Anthropic's 429 "Extra usage
is required for long context requests" is `context_too_long`: that account may not send a prompt this
long to the model, but another model may take it, and shorter prompts still pass (so not held against
the model's health)."""

from __future__ import annotations

from typing import Literal, get_args

from switchyard.common.errors import ProviderError

ErrorKind = Literal[
    "rate_limited",
    "overloaded",
    "auth",
    "quota_exhausted",
    "bad_request",
    "context_too_long",
    "content_policy",
    "timeout",
    "network",
    "bad_response",
    "circuit_open",
]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)

RETRYABLE: frozenset[str] = frozenset({"rate_limited", "overloaded", "timeout", "network", "bad_response"})
# Not a provider's: a call not sent because the task's hard budget was spent (`budgeted.Spending`); the task
# ends `budget_exceeded`, no other candidate asked.
BUDGET_SPENT = "budget_spent"
NO_FALLBACK: frozenset[str] = frozenset({"content_policy", BUDGET_SPENT})
# Failures of the provider account that stay until an operator acts (its key, its credit): the gateway says
# `x-should-retry: false` for them.
OPERATOR_FAILURES: frozenset[str] = frozenset({"auth", "quota_exhausted"})


def provider_error(
    kind: ErrorKind,
    message: str,
    *,
    retry_after: float | None = None,
    retryable: bool | None = None,
    sent: bool = True,
    cut_short: bool = False,
    abandoned: bool = False,
) -> ProviderError:
    """A ProviderError of `kind`; `retryable` defaults to the kind's row in the table above. `sent=False`
    for a call refused before it went out (the model is known to refuse it); `cut_short=True` for a
    `timeout` at a bound its task's deadline shortened (`ProviderCall.short_bound`); `abandoned=True` for a
    `timeout` of ours after the request went out (the provider charged its prompt: it is billed)."""
    return ProviderError(
        message,
        kind=kind,
        retryable=kind in RETRYABLE if retryable is None else retryable,
        retry_after=retry_after,
        sent=sent,
        cut_short=cut_short,
        abandoned=abandoned,
    )


def should_fall_back(error: ProviderError) -> bool:
    return error.kind not in NO_FALLBACK


def kind_for_status(status: int) -> ErrorKind:
    """The default kind of an HTTP status when the body says nothing more specific."""
    if status in (401, 403):
        return "auth"
    if status == 402:  # Payment Required: DeepSeek's, OpenRouter's, Gemini's prepay credits (its body says)
        return "quota_exhausted"
    if status == 408:
        return "timeout"
    if status == 413:
        return "context_too_long"
    if status == 429:
        return "rate_limited"
    if status >= 500 or status == 409:
        return "overloaded"
    return "bad_request"
