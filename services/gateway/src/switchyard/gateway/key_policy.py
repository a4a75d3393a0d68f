"""An API key's own policy, as LiteLLM's and Portkey's "virtual keys" give teams: the models it may use,
its own requests and tokens per minute, and its own budget per UTC day or calendar month, or in all (no
duration: a lifetime budget, as LiteLLM's `max_budget` without `budget_duration`).

Each part is optional; a key with none has no policy (`Principal.key_policy` is None) and is admitted
exactly as before, with no counter of its own. The limits and the budget are counters like the user's
and the organisation's (`limits.models.checks`, `budgets.service.accounts`), taken in the same round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal, get_args

from switchyard.gateway.errors import PermissionDenied

BudgetDuration = Literal["1d", "1mo"]  # the UTC day, the calendar month (UTC): the budgets' own periods
BUDGET_DURATIONS: tuple[str, ...] = get_args(BudgetDuration)
NOT_ALLOWED = "model_not_allowed"


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    models: frozenset[str] | None = None  # ids or aliases (`auto` among them when the key may route)
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget_usd: float | None = None
    budget_duration: BudgetDuration | None = None

    @classmethod
    def of(
        cls,
        *,
        models: Collection[str] | None,
        rpm_limit: int | None,
        tpm_limit: int | None,
        max_budget_usd: float | None,
        budget_duration: str | None,
    ) -> KeyPolicy | None:
        """A key's policy from its columns; None when it sets nothing."""
        duration = budget_duration if budget_duration in BUDGET_DURATIONS else None
        policy = cls(
            models=None if models is None else frozenset(models),
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            max_budget_usd=max_budget_usd,
            budget_duration=duration,  # type: ignore[arg-type]  # checked against BUDGET_DURATIONS
        )
        return None if policy == cls() else policy

    @property
    def budget(self) -> tuple[float, BudgetDuration | None] | None:
        """(USD, duration; None: in all, its lifetime) when the key has a budget of its own."""
        if self.max_budget_usd is None:
            return None
        return self.max_budget_usd, self.budget_duration


def allowed_models(policy: KeyPolicy | None) -> frozenset[str] | None:
    """The key's allow-list; None: every model."""
    return None if policy is None else policy.models


def task_models(policy: KeyPolicy | None) -> list[str] | None:
    """The allow-list a task carries to the router (`TaskSubmitted.allowed_models`), sorted."""
    models = allowed_models(policy)
    return None if models is None else sorted(models)


def allows(models: frozenset[str], asked: str, resolve: Callable[[str], str]) -> bool:
    """Whether a key listing `models` may ask for `asked`: named in the list, or standing for (an alias's
    target) what a listed name stands for, so listing an alias allows its model and the reverse."""
    return asked in models or resolve(asked) in {resolve(m) for m in models}


def check_model(models: frozenset[str] | None, asked: str, resolve: Callable[[str], str]) -> None:
    """Raises 403 `model_not_allowed` when `asked` is outside the key's allow-list (`models`)."""
    if models is not None and not allows(models, asked, resolve):
        raise PermissionDenied(
            f"The model '{asked}' is not allowed for this API key; its allowed models are: "
            f"{', '.join(sorted(models))}",
            code=NOT_ALLOWED,
            param="model",
        )
