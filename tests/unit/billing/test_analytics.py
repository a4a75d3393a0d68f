"""Forecast, anomaly flags and alert thresholds: pure functions on hand-made spend series."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from switchyard.billing import alerts, analytics
from switchyard.billing.aggregates import from_e10, to_e10
from switchyard.billing.pricing import price
from switchyard.common.policy import load_policy

pytestmark = pytest.mark.unit

D = Decimal


def _days(first: date, values: list[str]) -> dict[date, Decimal]:
    return {first + timedelta(n): D(v) for n, v in enumerate(values)}


def test_money_round_trips_through_integer_units_exactly() -> None:
    for value in ("0.0000000001", "0.0005253000", "123456.7890123456", "0"):
        assert from_e10(to_e10(D(value))) == D(value).quantize(D("1e-10"))
    assert sum(to_e10(D("0.1")) for _ in range(10)) == to_e10(D("1"))  # no float drift


def test_linear_fit_recovers_a_line() -> None:
    a, b = analytics.linear_fit([1.0, 3.0, 5.0, 7.0])
    assert (round(a, 9), round(b, 9)) == (1.0, 2.0)
    assert analytics.linear_fit([4.0]) == (4.0, 0.0)


def test_flat_spend_forecasts_the_same_rate_for_the_days_left() -> None:
    # $2 every day of November up to and including the 10th (today, spent in full already).
    costs = _days(date(2026, 10, 20), ["2"] * 22)
    got = analytics.forecast_month(costs, as_of=date(2026, 11, 10), window_days=14)
    assert got.spent_to_date == D(20)
    assert got.trend_daily == D("2.0000000000")
    assert got.forecast == D(20) + 20 * D(2)  # 20 more days at $2


def test_growing_spend_projects_the_trend_and_today_is_completed() -> None:
    # +$1 a day: the window ends at $14 on the 9th; today ($10 so far) is expected to reach $15.
    costs = _days(date(2026, 10, 27), [str(n) for n in range(1, 15)])  # Oct 27 .. Nov 9 -> 1..14
    costs[date(2026, 11, 10)] = D(10)
    got = analytics.forecast_month(costs, as_of=date(2026, 11, 10), window_days=14)
    spent = sum(D(n) for n in range(6, 15)) + D(10)  # Nov 1..9 are 6..14
    assert got.spent_to_date == spent
    remaining = D(5) + sum(D(15 + k) for k in range(1, 21))  # the rest of today, then Nov 11..30
    assert got.forecast == spent + remaining


def test_falling_spend_never_projects_below_zero() -> None:
    costs = _days(date(2026, 11, 1), [str(14 - 2 * n) for n in range(8)])  # 14, 12, ..., 0
    got = analytics.forecast_month(costs, as_of=date(2026, 11, 9), window_days=8)
    assert got.forecast == got.spent_to_date


def test_a_spike_is_flagged_and_ordinary_noise_is_not() -> None:
    noise = ["10", "11", "9", "10", "12", "10", "9", "11", "10", "10"]
    daily = analytics.series(
        _days(date(2026, 11, 1), [*noise, "40", "10"]), date(2026, 11, 1), date(2026, 11, 12)
    )
    flags = analytics.anomalies(daily, window_days=14)
    assert [(f.day, f.direction) for f in flags] == [(date(2026, 11, 11), "spike")]
    assert flags[0].baseline_usd == D("10.0000000000") and flags[0].score > 3.5


def test_a_drop_to_zero_after_flat_spend_is_flagged() -> None:
    daily = analytics.series(
        _days(date(2026, 11, 1), ["5"] * 8 + ["0"]), date(2026, 11, 1), date(2026, 11, 9)
    )
    flags = analytics.anomalies(daily, window_days=14)
    assert [(f.day, f.direction) for f in flags] == [(date(2026, 11, 9), "drop")]


def test_too_little_history_flags_nothing() -> None:
    daily = analytics.series(
        _days(date(2026, 11, 1), ["1", "1", "1", "100"]), date(2026, 11, 1), date(2026, 11, 4)
    )
    assert analytics.anomalies(daily, window_days=14) == []


@pytest.mark.parametrize(
    ("spent", "limit", "expected"),
    [
        (0, 100, []),
        (49, 100, []),
        (50, 100, [50]),
        (79, 100, [50]),
        (80, 100, [50, 80]),
        (100, 100, [50, 80, 100]),
        (250, 100, [50, 80, 100]),
        (1, 0, [50, 80, 100]),  # a zero budget is used up by anything
        (0, 0, []),
    ],
)
def test_thresholds_crossed(spent: int, limit: int, expected: list[int]) -> None:
    assert alerts.crossed(spent, limit) == expected


def test_the_days_before_a_tenant_first_spent_are_not_its_baseline() -> None:
    daily = analytics.series(
        _days(date(2026, 11, 1), ["0"] * 10 + ["3", "3.1", "2.9"]), date(2026, 11, 1), date(2026, 11, 13)
    )
    assert analytics.anomalies(daily, window_days=14) == []  # first use is not a spike over zero


def test_savings_price_prompt_cache_hits_at_the_reference_models_cache_price() -> None:
    policy = load_policy()
    reference = analytics.premium_reference(policy)
    assert reference is not None and reference.cached_input_per_1k is not None
    hits = analytics.TokenUse(
        model="openai/gpt-6-luna",
        tier="fast",
        kind="task",
        requests=1,
        prompt_tokens=2048,
        completion_tokens=100,
        cost=Decimal("0.000252"),
        cache_read_tokens=1536,
    )
    [line] = analytics.savings_lines([hits], policy)
    cached = price(
        policy=policy, model=reference.id, prompt_tokens=2048, completion_tokens=100, cache_read_tokens=1536
    )
    uncached = price(policy=policy, model=reference.id, prompt_tokens=2048, completion_tokens=100)
    assert line.premium_usd == cached.cost_usd < uncached.cost_usd


def test_savings_keep_answers_of_a_model_the_policy_has_since_retired() -> None:
    """A policy update drops retired models; what they answered was priced when it was charged, so it is
    still set against premium. An answer no policy ever priced counts at zero both ways."""
    policy = load_policy()
    reference = analytics.premium_reference(policy)
    assert reference is not None and policy.model("openai/gpt-4o-mini") is None
    use = {"tier": "fast", "kind": "task", "requests": 1, "prompt_tokens": 1000, "completion_tokens": 100}
    retired = analytics.TokenUse(model="openai/gpt-4o-mini", cost=Decimal("0.00021"), **use)  # type: ignore[arg-type]
    [line] = analytics.savings_lines([retired], policy)
    at_premium = price(policy=policy, model=reference.id, prompt_tokens=1000, completion_tokens=100)
    assert line.paid_usd == Decimal("0.00021") and line.premium_usd == at_premium.cost_usd > line.paid_usd
    unpriced = analytics.TokenUse(model="acme/own-model", cost=Decimal(0), **use)  # type: ignore[arg-type]
    [line] = analytics.savings_lines([unpriced], policy)
    assert line.paid_usd == line.premium_usd == 0


def test_savings_never_reprice_embeddings_at_the_premium_chat_model() -> None:
    """Always-premium routing would have embedded with the same model (a chat model gives no vectors):
    embedding entries count at their own cost both ways, beside a chat answer that is re-priced."""
    policy = load_policy()
    reference = analytics.premium_reference(policy)
    assert reference is not None and not reference.embeds
    embed = {"kind": "task", "requests": 1, "prompt_tokens": 100_000, "completion_tokens": 0}
    small = analytics.TokenUse(model="openai/text-embedding-3-small", tier="fast", cost=D("0.002"), **embed)  # type: ignore[arg-type]
    local = analytics.TokenUse(model="local/all-minilm-l6-v2", tier="local", cost=D(0), **embed)  # type: ignore[arg-type]
    retired = analytics.TokenUse(model="openai/text-embedding-ada-002", tier="fast", cost=D("0.01"), **embed)  # type: ignore[arg-type]
    chat = analytics.TokenUse(
        model="openai/gpt-6-luna",
        tier="fast",
        kind="task",
        requests=1,
        prompt_tokens=1000,
        completion_tokens=100,
        cost=D("0.00015"),
    )
    lines = {line.tier: line for line in analytics.savings_lines([small, local, retired, chat], policy)}
    assert lines["local"].paid_usd == lines["local"].premium_usd == 0
    at_premium = price(policy=policy, model=reference.id, prompt_tokens=1000, completion_tokens=100).cost_usd
    fast = lines["fast"]
    assert fast.paid_usd == D("0.01215") and fast.premium_usd == D("0.012") + at_premium
