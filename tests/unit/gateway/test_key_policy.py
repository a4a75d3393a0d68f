"""Pure parts of per-key policies: the allow-list's check (aliases both ways), the key's own counters and
budget account, which exist only for what a key sets, and the refusals' wording."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from switchyard.gateway.budgets.service import Account, _exhausted, accounts, key_account
from switchyard.gateway.errors import PermissionDenied, retry_header
from switchyard.gateway.key_policy import KeyPolicy, check_model, task_models
from switchyard.gateway.limits.models import Check, Limits, checks
from switchyard.gateway.limits.service import _refusal
from switchyard.gateway.tenants import Principal

pytestmark = pytest.mark.unit
ALIASES = {"cheap": "openai/gpt-6-luna", "smart": "auto"}


def _resolve(name: str) -> str:
    return ALIASES.get(name, name)


def _checks(key: tuple[str, KeyPolicy] | None) -> list[Check]:
    return checks(
        Limits(), now=125.0, tenant_id="t", subject="u", tokens=50, global_requests_per_min=7, key=key
    )


def test_the_allow_list_takes_ids_and_aliases_both_ways_and_auto_only_when_listed() -> None:
    check_model(None, "anything", _resolve)  # no list: every model
    listed = frozenset({"cheap", "anthropic/claude-haiku-5-5"})
    for ok in ("cheap", "openai/gpt-6-luna", "anthropic/claude-haiku-5-5"):
        check_model(listed, ok, _resolve)
    for refused in ("auto", "smart", "openai/gpt-6.1-sol"):
        with pytest.raises(PermissionDenied) as exc:
            check_model(listed, refused, _resolve)
        err = exc.value
        assert (err.status, err.code, err.param) == (403, "model_not_allowed", "model")
        assert err.message == (
            f"The model '{refused}' is not allowed for this API key; its allowed models are: "
            "anthropic/claude-haiku-5-5, cheap"
        )
    check_model(frozenset({"smart"}), "auto", _resolve)  # an alias of auto lets the key route


def test_a_key_without_a_policy_has_no_counter_of_its_own() -> None:
    assert (
        KeyPolicy.of(models=None, rpm_limit=None, tpm_limit=None, max_budget_usd=None, budget_duration=None)
        is None
    )
    plain = Principal(tenant_id="t", api_key_id="k", user_id="u", key_prefix="p")
    base = _checks(None)
    assert not any(c.scope == "key" for c in base)
    assert [a.scope for a in accounts(plain, now=datetime.now(UTC), plan_daily_usd={})] == ["org", "user"]
    models_only = KeyPolicy(models=frozenset({"auto"}))
    keyed = _checks(("k", models_only))
    assert keyed == base  # an allow-list is no counter
    assert task_models(models_only) == ["auto"] and task_models(None) is None


def test_a_keys_limits_are_per_minute_counters_after_the_others() -> None:
    policy = KeyPolicy(rpm_limit=5, tpm_limit=300)
    made = _checks(("k1", policy))
    assert [(c.scope, c.kind, c.key, c.limit, c.delta, c.reset_at) for c in made[-2:]] == [
        ("key", "requests", "req.key.k1.2", 5, 1, 180.0),
        ("key", "tokens", "tok.key.k1.2", 300, 50, 180.0),
    ]
    refusal = _refusal(made[-1], 280, now=125.0, headers={})
    assert (refusal.status, refusal.type, refusal.code) == (429, "tokens", "rate_limit_exceeded")
    assert refusal.message.startswith("Rate limit reached for tokens per min (key): limit 300, used 280")
    too_big = _refusal(replace(made[-1], delta=400), 0, now=125.0, headers={})
    assert "Request too large for tokens per min (key)" in too_big.message


def test_a_keys_budget_is_a_daily_or_monthly_account() -> None:
    now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    day = key_account("k1", 1.5, "1d", now=now)
    assert (day.key, day.ceiling, day.period, day.ends_at) == (
        "spend.key.k1.20261231",
        1_500_000,
        "20261231",
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    month = key_account("k1", 20.0, "1mo", now=now)
    assert (month.key, month.period, month.ends_at) == (
        "spend.key.k1.202612",
        "202612",
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    principal = Principal(
        tenant_id="t",
        api_key_id="k1",
        user_id="u",
        key_prefix="p",
        key_policy=KeyPolicy(max_budget_usd=1.5, budget_duration="1d"),
    )
    assert [a.scope for a in accounts(principal, now=now, plan_daily_usd={})] == ["org", "user", "key"]
    refused = _exhausted(day, 1_480_000, worst_case=50_000)
    assert (refused.status, refused.type, refused.code) == (429, "insufficient_quota", "budget_exceeded")
    assert "more than is left of this API key's daily budget ($0.0200 of $1.50)" in refused.message
    # Retry-After until it renews, but not for the SDKs: they would retry in seconds, or sleep a day
    assert refused.headers["retry-after"] and retry_header(refused) == {"x-should-retry": "false"}


def test_a_budget_without_a_duration_is_a_lifetime_account_that_never_renews() -> None:
    now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    policy = KeyPolicy.of(
        models=None, rpm_limit=None, tpm_limit=None, max_budget_usd=2.0, budget_duration=None
    )
    assert policy is not None and policy.budget == (2.0, None)
    total = key_account("k1", 2.0, None, now=now)
    assert (total.key, total.ceiling, total.period, total.ends_at, total.every) == (
        "spend.key.k1.total",
        2_000_000,
        "lifetime",
        None,
        "lifetime",
    )
    refused = _exhausted(total, 1_990_000, worst_case=50_000)
    assert (refused.status, refused.type, refused.code) == (429, "insufficient_quota", "budget_exceeded")
    assert "more than is left of this API key's lifetime budget ($0.0100 of $2.00)" in refused.message
    assert "it does not renew" in refused.message
    assert "retry-after" not in refused.headers and retry_header(refused) == {"x-should-retry": "false"}


def test_a_rotated_keys_counters_are_those_of_the_key_it_was_rotated_from() -> None:
    """Its budget, its own limits and (a key without a user) the user's: a rotation starts none afresh."""
    policy = KeyPolicy(rpm_limit=5, max_budget_usd=1.0, budget_duration="1mo")
    rotated = Principal(
        tenant_id="t", api_key_id="k2", user_id=None, key_prefix="p", key_lineage="k1", key_policy=policy
    )
    assert rotated.counts_as == "k1" and rotated.subject == "key-k1"
    now = datetime(2026, 12, 6, tzinfo=UTC)
    mine = accounts(rotated, now=now, plan_daily_usd={})
    assert [a.key for a in mine] == [
        "spend.org.t.202612",
        "spend.user.key-k1.20261206",
        "spend.key.k1.202612",
    ]
    first = replace(rotated, api_key_id="k1", key_lineage=None)
    assert first.counts_as == "k1" and accounts(first, now=now, plan_daily_usd={}) == mine


def test_a_budget_that_renews_within_a_minute_lets_the_sdks_wait_for_it() -> None:
    """A day's budget refused at 23:59:55 renews in seconds: the SDKs' own wait (Retry-After, which they
    honour up to a minute) gets the request through, so not `x-should-retry: false` (they would give up)."""
    soon = datetime.now(UTC) + timedelta(seconds=5)
    day = Account("user", "spend.user.u.20261206", 1_500_000, soon, "20261206")
    refused = _exhausted(day, 1_480_000, worst_case=50_000)
    assert refused.code == "budget_exceeded" and int(refused.headers["retry-after"]) <= 5
    assert retry_header(refused) == {"x-should-retry": "true"}


def test_a_budget_under_a_cent_is_named_as_set_not_rounded_to_nothing() -> None:
    """A key's $0.001 budget was refused as "($0.0010 of $0.00)": the budget read as none at all."""
    now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    lifetime = _exhausted(key_account("k1", 0.001, None, now=now), 0, worst_case=50_000)
    assert "lifetime budget ($0.0010 of $0.001)" in lifetime.message
    daily = key_account("k1", 0.0025, "1d", now=now)
    assert "daily budget ($0.0005 of $0.0025)" in _exhausted(daily, 2_000, worst_case=1_000).message
    assert "whole daily budget ($0.0025)" in _exhausted(daily, 0, worst_case=50_000).message
    assert (
        "($0.0100 of $2.00)"
        in _exhausted(key_account("k1", 2.0, None, now=now), 1_990_000, worst_case=1).message
    )
