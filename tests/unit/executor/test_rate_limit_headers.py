"""OpenAI's 429 without Retry-After still says when to come back: its x-ratelimit-reset-* headers."""

from __future__ import annotations

import httpx
import pytest

from switchyard.executor.providers.openai.wire import error_from_body, ratelimit_reset
from switchyard.executor.resilience.retry import RetryPolicy

pytestmark = pytest.mark.unit
RATE_LIMITED = b'{"error": {"message": "Rate limited", "type": "tokens", "code": "rate_limit_exceeded"}}'


def limits(**values: str) -> httpx.Headers:
    return httpx.Headers({f"x-ratelimit-{k.replace('_', '-')}": v for k, v in values.items()})


def test_the_reset_of_the_limit_with_nothing_left_is_the_wait() -> None:
    headers = limits(remaining_requests="0", reset_requests="7s", remaining_tokens="900", reset_tokens="20ms")
    assert ratelimit_reset(headers) == 7.0
    both = limits(remaining_requests="0", reset_requests="1s", remaining_tokens="0", reset_tokens="6m0s")
    assert ratelimit_reset(both) == 360.0
    # a request larger than the tokens left is refused while some are left: the tokens' reset
    assert ratelimit_reset(limits(remaining_tokens="120", reset_tokens="1m30.5s")) == 90.5
    assert ratelimit_reset(limits(remaining_tokens="0", reset_tokens="12")) == 12.0  # seconds, unsuffixed


def test_what_is_not_a_duration_is_no_wait() -> None:
    assert ratelimit_reset(httpx.Headers()) is None
    assert ratelimit_reset(limits(remaining_tokens="0", reset_tokens="soon")) is None
    assert ratelimit_reset(limits(remaining_tokens="0", reset_tokens="1x2s")) is None
    assert ratelimit_reset(limits(remaining_tokens="0", reset_tokens="-1")) is None


def test_a_429_without_retry_after_waits_for_the_reset_and_retry_after_still_comes_first() -> None:
    error = error_from_body(429, RATE_LIMITED, limits(remaining_tokens="0", reset_tokens="6m0s"))
    assert (error.kind, error.retry_after) == ("rate_limited", 360.0)
    # longer than the executor waits for one model: the next candidate at once, not two retries into it
    assert RetryPolicy().delay(1, error) is None
    said = httpx.Headers(
        {"retry-after": "2", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m"}
    )
    assert error_from_body(429, RATE_LIMITED, said).retry_after == 2.0
    # not a rate limit's: a 503 is not given the limits' reset
    assert error_from_body(503, b"{}", limits(remaining_tokens="0", reset_tokens="6m")).retry_after is None
