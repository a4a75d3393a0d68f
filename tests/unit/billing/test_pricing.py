from __future__ import annotations

from decimal import Decimal

import pytest

from switchyard.billing.pricing import price
from switchyard.common.policy import load_policy

pytestmark = pytest.mark.unit


def test_prices_input_and_output_tokens_exactly() -> None:
    policy = load_policy()
    # gpt-6-luna: 0.0001 per 1K input, 0.0005 per 1K output
    got = price(policy=policy, model="openai/gpt-6-luna", prompt_tokens=1234, completion_tokens=567)
    assert got.priced and got.cost_usd == Decimal("0.0004069000")


def test_one_token_of_the_cheapest_model_is_not_rounded_away() -> None:
    got = price(policy=load_policy(), model="openai/gpt-6-luna", prompt_tokens=1, completion_tokens=0)
    assert got.cost_usd == Decimal("0.0000001")


def test_an_unknown_model_costs_nothing_and_says_so() -> None:
    got = price(policy=load_policy(), model="openai/some-new-model", prompt_tokens=100, completion_tokens=100)
    assert not got.priced and got.cost_usd == 0


def test_the_local_model_is_priced_at_zero() -> None:
    got = price(
        policy=load_policy(), model="local/smollm2-135m-instruct", prompt_tokens=100, completion_tokens=9
    )
    assert got.priced and got.cost_usd == 0


def test_prompt_cache_reads_and_writes_are_priced_at_their_own_rates() -> None:
    policy = load_policy()
    # gpt-6-luna: 1,536 of 2,048 prompt tokens read from OpenAI's cache at 0.00001 per 1K (a tenth)
    got = price(
        policy=policy,
        model="openai/gpt-6-luna",
        prompt_tokens=2048,
        completion_tokens=100,
        cache_read_tokens=1536,
    )
    assert got.cost_usd == Decimal("0.0001165600")  # 512 x 0.0001 + 1536 x 0.00001 + 100 x 0.0005, / 1K
    full = price(policy=policy, model="openai/gpt-6-luna", prompt_tokens=2048, completion_tokens=100)
    assert full.cost_usd == Decimal("0.0002548000")  # before: every prompt token at the input price
    # claude-sonnet-5-5: 12 input at 0.002, 1,500 cache reads at 0.0001, 300 cache writes at 0.0025
    got = price(
        policy=policy,
        model="anthropic/claude-sonnet-5-5",
        prompt_tokens=1812,
        completion_tokens=0,
        cache_read_tokens=1500,
        cache_write_tokens=300,
    )
    assert got.cost_usd == Decimal("0.0009240000")


def test_a_provider_reporting_more_cache_than_prompt_is_not_priced_below_zero_or_twice() -> None:
    policy = load_policy()
    everything_read = price(
        policy=policy,
        model="openai/gpt-6-luna",
        prompt_tokens=100,
        completion_tokens=0,
        cache_read_tokens=100,
    )
    too_many = price(
        policy=policy,
        model="openai/gpt-6-luna",
        prompt_tokens=100,
        completion_tokens=0,
        cache_read_tokens=500,
        cache_write_tokens=50,
    )
    assert too_many.cost_usd == everything_read.cost_usd == Decimal("0.0000010000")


def test_a_model_without_cache_prices_bills_cache_tokens_at_the_input_price() -> None:
    policy = load_policy()
    spec = policy.model("openai/gpt-6-luna")
    assert spec is not None
    bare = spec.model_copy(update={"cached_input_per_1k": None, "cache_write_per_1k": None})
    assert bare.cost(2048, 100, read=1536, written=0) == pytest.approx(bare.cost(2048, 100))
    assert spec.cost(2048, 100, read=1536) == pytest.approx(0.00011656)  # the policy's float twin agrees
