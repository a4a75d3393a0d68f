"""Spend analytics, pure: the month-end forecast from the trailing trend, anomaly flags (a robust z-score
against the trailing window's median and MAD), and savings against always-premium routing."""

from __future__ import annotations

import statistics
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from switchyard.billing.aggregates import PLACES
from switchyard.billing.pricing import price
from switchyard.common.billing_rpc import Anomaly, SavingsLine
from switchyard.common.policy import ModelSpec, Policy

MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normally distributed spend
ANOMALY_Z = 3.5  # Iglewicz & Hoaglin's cut-off for the modified z-score
MIN_HISTORY = 7  # days of trailing spend needed before a day can be called unusual
MEAN_AD_SCALE = 1.253314  # mean absolute deviation x this estimates the standard deviation (normal)
FLAT_FLOOR_USD = 1e-6


def series(costs: dict[date, Decimal], first: date, last: date) -> list[tuple[date, Decimal]]:
    """Every day first..last with its cost (zero on days without usage)."""
    days = (last - first).days + 1
    return [(d, costs.get(d, Decimal(0))) for d in (first + timedelta(n) for n in range(max(days, 0)))]


def linear_fit(values: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x over x = 0..n-1; a flat line through the mean for fewer than 2 points."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    if n == 1:
        return values[0], 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    sxx = sum((x - mean_x) ** 2 for x in range(n))
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    b = sxy / sxx
    return mean_y - b * mean_x, b


@dataclass(frozen=True, slots=True)
class Projection:
    spent_to_date: Decimal
    forecast: Decimal
    trend_daily: Decimal


def forecast_month(costs: dict[date, Decimal], *, as_of: date, window_days: int) -> Projection:
    """Month-end spend: what is spent up to and including `as_of`, plus, for each day left, the trend
    fitted on the `window_days` complete days before `as_of` (never below zero). Today's spend so far
    counts; the trend fills in the rest of today only when it expects more than has been spent."""
    month_first = as_of.replace(day=1)
    month_last = as_of.replace(day=monthrange(as_of.year, as_of.month)[1])
    spent = sum((c for d, c in costs.items() if month_first <= d <= as_of), Decimal(0))
    window = series(costs, as_of - timedelta(window_days), as_of - timedelta(1))
    a, b = linear_fit([float(c) for _, c in window])
    n = len(window)

    def expected(day: date) -> float:  # x of as_of - 1 is n - 1
        return max(a + b * (n - 1 + (day - as_of).days + 1), 0.0)

    today_left = max(expected(as_of) - float(costs.get(as_of, Decimal(0))), 0.0)
    rest = sum(expected(as_of + timedelta(k)) for k in range(1, (month_last - as_of).days + 1))
    projected = Decimal(str(today_left + rest)).quantize(PLACES)
    trend = Decimal(str(max(a + b * (n - 1), 0.0))).quantize(PLACES)
    return Projection(spent_to_date=spent, forecast=spent + projected, trend_daily=trend)


def anomalies(
    daily: list[tuple[date, Decimal]], *, window_days: int, threshold: float = ANOMALY_Z
) -> list[Anomaly]:
    """Days whose spend is far from the trailing `window_days`: a robust z-score (cost - median) / spread
    beyond `threshold`, with spread = 1.4826 x MAD. Only days with at least MIN_HISTORY days of history
    since the first day with any spend are judged (the days before a tenant's first use are not its
    normal). When the window is too flat for a MAD, the mean absolute deviation (x 1.2533) stands in,
    and for a perfectly flat window 1 % of its level: a change from flat spend is always flagged."""
    started = next((i for i, (_, c) in enumerate(daily) if c > 0), len(daily))
    flagged: list[Anomaly] = []
    for i, (day, cost) in enumerate(daily):
        history = [float(c) for _, c in daily[max(started, i - window_days) : i]]
        if len(history) < MIN_HISTORY:
            continue
        median = statistics.median(history)
        spread = MAD_SCALE * statistics.median(abs(h - median) for h in history)
        if spread == 0:
            spread = MEAN_AD_SCALE * statistics.fmean(abs(h - median) for h in history)
        if spread == 0:
            spread = max(0.01 * abs(median), FLAT_FLOOR_USD)
        score = (float(cost) - median) / spread
        if abs(score) > threshold:
            flagged.append(
                Anomaly(
                    day=day,
                    cost_usd=cost,
                    baseline_usd=Decimal(str(median)).quantize(PLACES),
                    score=round(score, 2),
                    direction="spike" if score > 0 else "drop",
                )
            )
    return flagged


def premium_reference(policy: Policy) -> ModelSpec | None:
    """The model always-premium routing would use: the policy's first premium model."""
    premium = policy.in_tier("premium")
    return premium[0] if premium else None


@dataclass(frozen=True, slots=True)
class TokenUse:
    model: str
    tier: str
    kind: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    cache_read_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it


def savings_lines(use: list[TokenUse], policy: Policy) -> list[SavingsLine]:
    """Per tier: what was paid, and what the same tokens would have cost at the premium reference model.

    Delivered answers are re-priced at premium (premium answers keep their real cost); billable extra
    calls (parallel losers, escalated cascade steps) would not exist under always-premium routing, so
    their counterfactual cost is zero. Unpriced answers (a model no policy priced) are counted at zero
    both ways; an answer priced when it was charged, by a model the policy no longer lists (retired since),
    is re-priced at premium like any other. Prompt tokens read from or written to a provider's cache are
    re-priced at the reference model's cache prices: the same prompts would have been cached there.

    Embeddings are not re-priced (premium routing would have used the same embedding model: a chat model
    cannot stand in for it): an embedding model's entries, and those without completion tokens of a model
    the policy no longer lists (they cannot be told from a retired embedding model's), count at their
    cost both ways."""
    reference = premium_reference(policy)
    by_tier: dict[str, SavingsLine] = {}
    for u in use:
        if u.kind == "call":
            premium = Decimal(0)
        elif u.tier == "premium" or reference is None or not _premium_instead(u, policy.model(u.model)):
            premium = u.cost
        else:
            premium = price(
                policy=policy,
                model=reference.id,
                prompt_tokens=u.prompt_tokens,
                completion_tokens=u.completion_tokens,
                cache_read_tokens=u.cache_read_tokens,
                cache_write_tokens=u.cache_write_tokens,
            ).cost_usd
        zero = Decimal(0).quantize(PLACES)
        line = by_tier.get(u.tier) or SavingsLine(
            tier=u.tier, requests=0, prompt_tokens=0, completion_tokens=0, paid_usd=zero, premium_usd=zero
        )
        by_tier[u.tier] = line.model_copy(
            update={
                "requests": line.requests + u.requests,
                "prompt_tokens": line.prompt_tokens + u.prompt_tokens,
                "completion_tokens": line.completion_tokens + u.completion_tokens,
                "paid_usd": line.paid_usd + u.cost,
                "premium_usd": line.premium_usd + premium,
            }
        )
    return [by_tier[t] for t in sorted(by_tier)]


def _premium_instead(u: TokenUse, spec: ModelSpec | None) -> bool:
    """Whether always-premium routing would have given this answer with the reference model: a chat
    answer, priced; an entry of a model the policy no longer lists, when it has completion tokens."""
    if spec is None:
        return bool(u.cost and u.completion_tokens)
    return not spec.embeds
