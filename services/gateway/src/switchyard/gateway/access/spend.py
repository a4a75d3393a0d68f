"""What a key with a budget of its own has spent this period (or in all, for a lifetime budget), for the
admin API (GET /v1/admin/keys/{id})."""

from __future__ import annotations

from datetime import UTC, datetime

from switchyard.common.errors import TransientError
from switchyard.gateway.access.models import KeySpend
from switchyard.gateway.budgets.pricing import MICRO
from switchyard.gateway.budgets.service import Budgets, key_account
from switchyard.gateway.errors import ServiceUnavailable
from switchyard.gateway.models import ApiKey


async def key_spend(budgets: Budgets | None, key: ApiKey) -> KeySpend | None:
    """None when the key has no budget, or budgets are off on this deployment."""
    policy = key.policy()
    budget = None if policy is None else policy.budget
    if budgets is None or budget is None:
        return None
    account = key_account(key.counts_as, *budget, now=datetime.now(UTC))
    assert account.ceiling is not None
    try:
        spent = await budgets.spent(account)
    except (TransientError, OSError, TimeoutError) as exc:
        raise ServiceUnavailable(
            "the spend counters are unavailable; try again", headers={"retry-after": "1"}, retry=True
        ) from exc
    return KeySpend(
        period=account.period,
        spent_usd=spent / MICRO,
        max_budget_usd=account.ceiling / MICRO,
        remaining_usd=max(account.ceiling - spent, 0) / MICRO,
        resets_at=account.ends_at,
    )
