"""The rules behind "a key mints no key wider than itself" (access/ceiling.py) and "an IPv6 client is its
/64" (access/lockout.py), case by case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from switchyard.gateway.access.ceiling import Ceiling
from switchyard.gateway.access.lockout import client_of
from switchyard.gateway.errors import PermissionDenied
from switchyard.gateway.key_policy import KeyPolicy

ALIASES = {"cheap": "local/small"}
SOON = datetime(2030, 1, 1, tzinfo=UTC)


def _ceiling(**policy: Any) -> Ceiling:
    return Ceiling(KeyPolicy(**policy), None, lambda name: ALIASES.get(name, name))


def _param(ceiling: Ceiling, policy: dict[str, Any], **kwargs: Any) -> str | None:
    try:
        ceiling.check(policy, **kwargs)
    except PermissionDenied as exc:
        return exc.param or "?"
    return None


@pytest.mark.parametrize(
    ("mine", "asked", "wider"),
    [
        ((1.0, "1d"), (1.0, "1d"), None),
        ((1.0, "1d"), (1.0, "1mo"), None),  # $1 a month is less than $1 a day
        ((1.0, "1d"), (1.0, None), None),  # and $1 in all, less still
        ((1.0, "1mo"), (1.0, "1d"), "budget_duration"),  # $1 a day can spend $30 a month
        ((1.0, None), (1.0, "1mo"), "budget_duration"),  # a lifetime's $1 renews never
        ((1.0, "1mo"), (1.5, "1mo"), "max_budget_usd"),
        ((1.0, "1mo"), (None, None), "max_budget_usd"),  # no budget: unlimited
    ],
)
def test_budgets_compare_by_what_they_allow_over_time(
    mine: tuple[float, str | None], asked: tuple[float | None, str | None], wider: str | None
) -> None:
    ceiling = _ceiling(max_budget_usd=mine[0], budget_duration=mine[1])
    assert _param(ceiling, {"max_budget_usd": asked[0], "budget_duration": asked[1]}) == wider


def test_models_limits_and_expiry() -> None:
    ceiling = Ceiling(KeyPolicy(models=frozenset({"cheap"}), rpm_limit=10), SOON, lambda n: ALIASES.get(n, n))
    within = {"models": ["local/small"], "rpm_limit": 10}
    assert _param(ceiling, within, expires_at=SOON) is None  # the alias's model is the alias
    assert _param(ceiling, {**within, "models": None}, expires_at=SOON) == "models"
    assert _param(ceiling, {**within, "models": ["local/big"]}, expires_at=SOON) == "models"
    assert _param(ceiling, {**within, "rpm_limit": None}, expires_at=SOON) == "rpm_limit"
    assert _param(ceiling, {**within, "rpm_limit": 0}, expires_at=SOON) is None
    assert _param(ceiling, within, expires_at=None) == "expires_at"
    assert _param(ceiling, within, expires_at=SOON + timedelta(seconds=1)) == "expires_at"
    assert _param(ceiling, within, expires_at=None, params={"expires_at": "expires_in_s"}) == "expires_in_s"
    # A PATCH checks the fields it sends only.
    assert _param(ceiling, {"models": None, "rpm_limit": 5}, fields={"rpm_limit"}) is None


def test_left_out_is_the_calling_keys() -> None:
    ceiling = _ceiling(models=frozenset({"a", "b"}), tpm_limit=100, max_budget_usd=2.0, budget_duration="1d")
    empty = dict.fromkeys(("models", "rpm_limit", "tpm_limit", "max_budget_usd", "budget_duration"))
    assert ceiling.fill(dict(empty), ()) == {
        **empty,
        "models": ["a", "b"],
        "tpm_limit": 100,
        "max_budget_usd": 2.0,
        "budget_duration": "1d",
    }
    # A budget asked without its period is a lifetime's (the narrowest), not the caller's period.
    assert ceiling.fill({**empty, "max_budget_usd": 1.0}, {"max_budget_usd"})["budget_duration"] is None
    # A period asked without an amount takes the caller's amount.
    assert ceiling.fill({**empty, "budget_duration": "1mo"}, {"budget_duration"})["max_budget_usd"] == 2.0
    assert not _ceiling().bounded and ceiling.bounded


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:0:7::1", "2001:db8:0:7::/64"),
        ("2001:db8:0:7:ffff:1:2:3", "2001:db8:0:7::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client on a dual-stack socket
        ("unknown", "unknown"),
    ],
)
def test_failures_are_counted_per_ipv4_address_and_ipv6_64(address: str, counted: str) -> None:
    assert client_of(address) == counted
