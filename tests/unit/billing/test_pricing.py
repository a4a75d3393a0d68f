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


def test_a_long_prompt_is_priced_whole_at_the_providers_long_context_rate() -> None:
    """OpenAI bills a GPT-6 request whose prompt passes 272K tokens at 2x input (and cache) and 1.5x
    output, the whole request; Haiku 5.5 above 100K at 5x. Billing, the router's estimates and the
    budgets' worst case all price it so."""
    policy = load_policy()
    at = price(policy=policy, model="openai/gpt-6-luna", prompt_tokens=272_000, completion_tokens=1000)
    assert at.cost_usd == Decimal("0.0277000000")  # 272,000 x 0.0001 + 1,000 x 0.0005, / 1K
    past = price(
        policy=policy,
        model="openai/gpt-6-luna",
        prompt_tokens=272_001,
        completion_tokens=1000,
        cache_read_tokens=200_000,
    )
    # (72,001 x 0.0001 + 200,000 x 0.00001) x 2 + 1,000 x 0.0005 x 1.5, / 1K
    assert past.cost_usd == Decimal("0.0191502000")
    haiku = price(
        policy=policy, model="anthropic/claude-haiku-5-5", prompt_tokens=150_000, completion_tokens=2000
    )
    assert haiku.cost_usd == Decimal("0.0800000000")  # (150,000 x 0.0001 + 2,000 x 0.0005) x 5, / 1K
    spec = policy.model("anthropic/claude-haiku-5-5")
    assert spec is not None and spec.cost(150_000, 2000) == pytest.approx(0.08)
    assert spec.worst_cost(150_000, 2000) == pytest.approx((150_000 * 0.000125 + 2000 * 0.0005) * 5 / 1000)
    assert spec.cost(100_000, 0) == pytest.approx(0.01)  # at the threshold: the ordinary rate


def test_an_embedding_model_is_priced_by_its_input_tokens() -> None:
    policy = load_policy()
    # text-embedding-3-small: 0.00002 per 1K input tokens; an embedding task has no completion tokens
    small = price(
        policy=policy, model="openai/text-embedding-3-small", prompt_tokens=123_456, completion_tokens=0
    )
    assert small.priced and small.cost_usd == Decimal("0.0024691200")
    local = price(policy=policy, model="local/all-minilm-l6-v2", prompt_tokens=5000, completion_tokens=0)
    assert local.priced and local.cost_usd == 0
