"""Roles and scopes. A key's effective scopes are its own scopes intersected with its user's role, so a
role change takes effect on every key of that user at once."""

from __future__ import annotations

from typing import Literal

Role = Literal["admin", "member", "auditor", "billing"]
Scope = Literal["inference", "admin", "audit:read", "billing:read"]
Plan = Literal["free", "pro", "enterprise"]

ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]
SCOPES: tuple[str, ...] = Scope.__args__  # type: ignore[attr-defined]
PLANS: tuple[str, ...] = Plan.__args__  # type: ignore[attr-defined]

INFERENCE = "inference"  # chat completions, messages, tasks, models
ADMIN = "admin"  # manage users and keys of the organisation
AUDIT_READ = "audit:read"  # read the organisation, its users, keys and ledger
BILLING_READ = "billing:read"  # read the organisation, its budgets and usage

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "member": frozenset({INFERENCE}),
    "auditor": frozenset({AUDIT_READ}),
    "billing": frozenset({BILLING_READ}),
}
# A key without a user (a service key of the organisation) acts as a member.
SERVICE_KEY_ROLE = "member"
# Reading the organisation's directory (itself, users, keys): any of these.
DIRECTORY_READ = frozenset({ADMIN, AUDIT_READ, BILLING_READ})


def effective_scopes(role: str, key_scopes: str | frozenset[str]) -> frozenset[str]:
    wanted = frozenset(key_scopes.split()) if isinstance(key_scopes, str) else key_scopes
    return wanted & ROLE_SCOPES.get(role, frozenset())


def plan_of(user_plan: str | None, org_plan: str) -> str:
    """The plan a user acts under: their own, never above their organisation's (whose plan the platform
    operator sets), else the organisation's. A user given a higher plan before their organisation was moved
    to a lower one gets the organisation's."""
    if not user_plan:
        return org_plan
    return min(user_plan, org_plan, key=lambda plan: PLANS.index(plan) if plan in PLANS else 0)


def above(plan: str, ceiling: str) -> bool:
    """Whether `plan` is above `ceiling` (free < pro < enterprise)."""
    return PLANS.index(plan) > PLANS.index(ceiling)


def default_scopes(role: str) -> str:
    return " ".join(s for s in SCOPES if s in ROLE_SCOPES[role])
