from __future__ import annotations

from decimal import Decimal

import pytest

from switchyard.billing.pricing import price
from switchyard.common.policy import load_policy

pytestmark = pytest.mark.unit


def test_prices_input_and_output_tokens_exactly() -> None:
    policy = load_policy()
    # gpt-4o-mini: 0.00015 per 1K input, 0.0006 per 1K output
    got = price(policy=policy, model="openai/gpt-4o-mini", prompt_tokens=1234, completion_tokens=567)
    assert got.priced and got.cost_usd == Decimal("0.0005253000")


def test_one_token_of_the_cheapest_model_is_not_rounded_away() -> None:
    got = price(policy=load_policy(), model="openai/gpt-4o-mini", prompt_tokens=1, completion_tokens=0)
    assert got.cost_usd == Decimal("0.00000015")


def test_an_unknown_model_costs_nothing_and_says_so() -> None:
    got = price(policy=load_policy(), model="openai/some-new-model", prompt_tokens=100, completion_tokens=100)
    assert not got.priced and got.cost_usd == 0


def test_the_local_model_is_priced_at_zero() -> None:
    got = price(
        policy=load_policy(), model="local/smollm2-135m-instruct", prompt_tokens=100, completion_tokens=9
    )
    assert got.priced and got.cost_usd == 0
