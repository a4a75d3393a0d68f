"""Pricing usage with the policy's price table. Pure: decimal arithmetic, no float rounding drift."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from switchyard.common.policy import Policy

PLACES = Decimal("1e-10")
THOUSAND = Decimal(1000)


@dataclass(frozen=True, slots=True)
class Price:
    cost_usd: Decimal
    priced: bool  # False: the model is not in the price table, so it was not charged


def price(*, policy: Policy, model: str, prompt_tokens: int, completion_tokens: int) -> Price:
    spec = policy.model(model)
    if spec is None:
        return Price(Decimal(0).quantize(PLACES), priced=False)
    # Prices are written as decimals in the policy; str() recovers exactly what was written.
    cost = prompt_tokens * Decimal(str(spec.input_per_1k)) + completion_tokens * Decimal(
        str(spec.output_per_1k)
    )
    return Price((cost / THOUSAND).quantize(PLACES), priced=True)
