"""Routing evaluation on recorded outcomes (RouteLLM-style): for prompts where we know whether a weak
and a strong model answered correctly, how much of always-premium quality does the router keep, and how
many premium calls does it make?

A row routed to the premium tier scores the strong model's outcome, any other tier the weak model's
(RouteLLM's MMLU files: Mixtral-8x7B vs GPT-4). The curve sweeps the premium threshold through the
router's own `decide`, so type chains, tiers and tenant rules all count.

Honest numbers need two disjoint sets of rows: a threshold is chosen on one (`fit_threshold`) and scored
on the other; picking the best point of a curve drawn on the rows it is reported on overstates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from switchyard.common.events import ChatRequest, Classification
from switchyard.common.policy import Policy, Thresholds
from switchyard.router.adaptive import RollingQuantile, premium_threshold
from switchyard.router.routing import decide


@dataclass(frozen=True, slots=True)
class Outcome:
    request: ChatRequest
    classification: Classification
    weak_correct: bool
    strong_correct: bool
    prompt_tokens: int
    group: str = ""  # what rows are resampled by for an interval (an MMLU subject)


@dataclass(frozen=True, slots=True)
class Point:
    threshold: float
    premium_share: float
    quality: float  # share of rows answered correctly
    relative_quality: float  # quality / always-premium quality
    cost_per_correct_usd: float  # estimated cost of the routed calls / rows answered correctly


@dataclass(frozen=True, slots=True)
class Routed:
    """Per row: did the router want the premium tier, and the estimated cost of its decision."""

    premium: tuple[bool, ...]
    cost_usd: tuple[float, ...]
    thresholds: tuple[float, ...]


def with_premium_threshold(policy: Policy, threshold: float) -> Policy:
    """A static threshold (no adaptive share), for the curve."""
    fast = min(policy.thresholds.fast_below, threshold)
    return policy.model_copy(update={"thresholds": Thresholds(fast_below=fast, premium_above=threshold)})


def route(
    rows: Sequence[Outcome], policy: Policy, *, available: set[str], threshold: float | None = None
) -> Routed:
    """With `threshold`, that static premium threshold; without, the policy as configured, run online
    over the rows in order (an adaptive threshold learns from the rows routed before, as in service)."""
    p = policy if threshold is None else with_premium_threshold(policy, threshold)
    recent = RollingQuantile(p.thresholds.window)
    adaptive = premium_threshold(recent)

    premium: list[bool] = []
    cost: list[float] = []
    used: list[float] = []
    for r in rows:
        recent.add(r.classification.complexity)
        d = decide(
            request=r.request,
            classification=r.classification,
            policy=p,
            available=available,
            prompt_tokens=r.prompt_tokens,
            adaptive_premium=adaptive,
        )
        used.append(d.reasons["thresholds"]["premium_above"])
        # A cascade starts cheap but exists to reach the wanted tier; what matters is the best tier asked.
        premium.append(d.reasons.get("wanted_tier") == "premium")
        cost.append(d.estimated_cost_usd)
    return Routed(tuple(premium), tuple(cost), tuple(used))


def score(rows: Sequence[Outcome], routed: Routed, *, threshold: float | None = None) -> Point:
    strong_quality = sum(r.strong_correct for r in rows) / len(rows)
    correct = sum(
        r.strong_correct if to_premium else r.weak_correct
        for r, to_premium in zip(rows, routed.premium, strict=True)
    )
    quality = correct / len(rows)
    used = routed.thresholds
    return Point(
        threshold=threshold if threshold is not None else round(sum(used) / len(used), 4),
        premium_share=sum(routed.premium) / len(rows),
        quality=quality,
        relative_quality=quality / strong_quality if strong_quality else 0.0,
        cost_per_correct_usd=sum(routed.cost_usd) / correct if correct else 0.0,
    )


def evaluate(
    rows: Sequence[Outcome], policy: Policy, *, available: set[str], threshold: float | None = None
) -> Point:
    return score(rows, route(rows, policy, available=available, threshold=threshold), threshold=threshold)


def curve(rows: Sequence[Outcome], policy: Policy, *, available: set[str], steps: int = 20) -> list[Point]:
    """Thresholds at quantiles of the rows' complexity, so the points spread over premium shares."""
    values = sorted(r.classification.complexity for r in rows)
    cuts = {round(values[min(int(len(values) * q / steps), len(values) - 1)], 4) for q in range(steps)}
    cuts |= {0.0, 1.0}
    points = [evaluate(rows, policy, available=available, threshold=t) for t in sorted(cuts)]
    return sorted(points, key=lambda pt: pt.premium_share)


def best_within(points: Sequence[Point], *, max_premium_share: float) -> Point | None:
    """The highest relative quality among points with at most that share of premium calls."""
    ok = [p for p in points if p.premium_share <= max_premium_share]
    return max(ok, key=lambda p: p.relative_quality, default=None)


def fit_threshold(
    rows: Sequence[Outcome], policy: Policy, *, available: set[str], max_premium_share: float, steps: int = 40
) -> Point | None:
    """The static threshold with the best quality within the premium share, chosen on `rows` (the fit
    split); score it on other rows."""
    return best_within(
        curve(rows, policy, available=available, steps=steps), max_premium_share=max_premium_share
    )


def interval(
    rows: Sequence[Outcome], routed: Routed, *, level: float = 0.9, samples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """A bootstrap interval of the relative quality, resampling whole groups (subjects): rows of one
    subject are not independent, so resampling rows would give too narrow an interval."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.group, []).append(i)
    keys = sorted(groups)
    got = np.array(
        [(r.strong_correct if p else r.weak_correct) for r, p in zip(rows, routed.premium, strict=True)],
        dtype=np.float64,
    )
    strong = np.array([r.strong_correct for r in rows], dtype=np.float64)
    per_group = np.array([[got[groups[k]].sum(), strong[groups[k]].sum()] for k in keys])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(samples, len(keys)))
    sums = per_group[draws].sum(axis=1)
    ratios = sums[:, 0] / np.maximum(sums[:, 1], 1.0)
    lo, hi = np.quantile(ratios, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
