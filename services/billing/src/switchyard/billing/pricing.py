"""Pricing usage with the policy's price table. Pure: decimal arithmetic, no float rounding drift."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from switchyard.common.policy import Policy

PLACES = Decimal("1e-10")
POLICY_VERSION_CHARS = 200  # what an entry stores of the policy's `version` (which nothing bounds)


@dataclass(frozen=True, slots=True)
class Price:
    cost_usd: Decimal
    priced: bool  # False: the model is not in the price table, so it was not charged
    policy_version: str  # the `version` of the policy whose price table gave it


def price(
    *,
    policy: Policy,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Price:
    """The cost of a call: prompt tokens the provider read from or wrote to its prompt cache (part of
    `prompt_tokens`) at the model's cache prices, the rest at its input price."""
    spec = policy.model(model)
    version = policy.version[:POLICY_VERSION_CHARS]
    if spec is None:
        return Price(Decimal(0).quantize(PLACES), priced=False, policy_version=version)
    cost = spec.cost_in(
        _exact, prompt_tokens, completion_tokens, read=cache_read_tokens, written=cache_write_tokens
    )
    return Price(cost.quantize(PLACES), priced=True, policy_version=version)


def _exact(value: float) -> Decimal:
    """A price or multiplier as the policy writes it: str() recovers the decimal that was written."""
    return Decimal(str(value))
