"""Pricing usage with the policy's price table. Pure: decimal arithmetic, no float rounding drift."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from switchyard.common.policy import Policy, cache_split

PLACES = Decimal("1e-10")
THOUSAND = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Price:
    cost_usd: Decimal
    priced: bool  # False: the model is not in the price table, so it was not charged


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
    if spec is None:
        return Price(Decimal(0).quantize(PLACES), priced=False)
    read, written = cache_split(prompt_tokens, cache_read_tokens, cache_write_tokens)
    # Prices (and multipliers) are written as decimals in the policy; str() recovers exactly what was
    # written. A long prompt is priced whole at the provider's long-context rate.
    into, out = (Decimal(str(m)) for m in spec.multipliers(prompt_tokens))
    cost = (
        (prompt_tokens - read - written) * Decimal(str(spec.input_per_1k))
        + read * Decimal(str(spec.cache_read_price()))
        + written * Decimal(str(spec.cache_write_price()))
    ) * into + completion_tokens * Decimal(str(spec.output_per_1k)) * out
    return Price((cost / THOUSAND).quantize(PLACES), priced=True)
