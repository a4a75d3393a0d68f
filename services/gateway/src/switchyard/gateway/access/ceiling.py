"""A key mints no key wider than itself. An admin key's own policy (its models, its rate limits, its
budget) and its expiry are a ceiling on every key it creates, changes or rotates: a field left out of a new
key takes the calling key's; a field asked wider (or `null`, which means unlimited) is refused with 403
naming it. Otherwise a restricted admin key handed to a script or a team could mint itself an
unrestricted one, or lift its own limits with a PATCH. Such a key also widens no organisation-level
setting (`Ceiling.widen`): the organisation's monthly budget or plan, a user's plan, a user's admin role.

Budgets compare by what they allow over time: at most as many dollars, renewing no more often (a budget
per UTC day renews most often, then a calendar month's, then a lifetime's, which never renews). A token
from the identity provider has no policy; its expiry is the session's, not a limit on the keys it makes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from switchyard.gateway.errors import PermissionDenied
from switchyard.gateway.key_policy import KeyPolicy, allows
from switchyard.gateway.tenants import Principal, aware

_RENEWS = {"1d": 0, "1mo": 1, None: 2}  # how often a budget starts afresh: the day most, a lifetime never
_DURATION = {"1d": "per UTC day", "1mo": "per calendar month", None: "in all"}
BUDGET = ("max_budget_usd", "budget_duration")
WIDER = "key_wider_than_caller"


def _same(name: str) -> str:
    return name


@dataclass(frozen=True)
class Ceiling:
    """What the calling key may hand out (None for a part: no bound of that kind)."""

    policy: KeyPolicy
    expires_at: datetime | None
    resolve: Callable[[str], str] = _same  # an alias's model, so listing either allows both
    # The keys a new key's spend also counts against (`ApiKey.ancestors`): the calling key's lineage, then
    # the keys that minted it; none for a token from the identity provider.
    ancestors: tuple[str, ...] = ()

    @classmethod
    def of(cls, principal: Principal, resolve: Callable[[str], str] = _same) -> Ceiling:
        if principal.from_token:
            return cls(principal.key_policy or KeyPolicy(), None, resolve)
        ancestors = (principal.counts_as, *principal.key_ancestors)
        return cls(principal.key_policy or KeyPolicy(), principal.expires_at, resolve, ancestors)

    @property
    def bounded(self) -> bool:
        return self.policy != KeyPolicy() or self.expires_at is not None

    @property
    def limited(self) -> bool:
        """Whether the calling key has limits of its own (models, rate limits, a budget): such a key widens
        no organisation-level setting (`widen`), which would let what it does exceed them."""
        return self.policy != KeyPolicy()

    def widen(self, param: str, what: str) -> None:
        """403 `key_wider_than_caller` naming `param` when the calling key is `limited`: `what` would
        widen an organisation-level setting (a budget, a plan, an admin)."""
        if self.limited:
            raise PermissionDenied(
                f"{what}: a key with limits of its own (models, rate limits or a budget) may narrow but "
                "not widen the organisation's budget or plan, its users' plans or its admins; use a key "
                "without limits",
                code=WIDER,
                param=param,
            )

    def fill(self, policy: dict[str, Any], sent: Collection[str]) -> dict[str, Any]:
        """A new key's policy columns: those `sent` as asked, the others the calling key's."""
        own = self.policy
        inherited: dict[str, Any] = {
            "models": None if own.models is None else sorted(own.models),
            "rpm_limit": own.rpm_limit,
            "tpm_limit": own.tpm_limit,
        }
        if own.max_budget_usd is not None:
            inherited.update(max_budget_usd=own.max_budget_usd, budget_duration=own.budget_duration)
            if "max_budget_usd" in sent and "budget_duration" not in sent:
                inherited.pop("budget_duration")  # a budget asked without its period: in all (narrowest)
        return {**policy, **{k: v for k, v in inherited.items() if k not in sent and v is not None}}

    def check(
        self,
        policy: Mapping[str, Any],
        *,
        expires_at: datetime | None = None,
        fields: Collection[str] | None = None,
        what: str = "the new key",
        params: Mapping[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        """Raises 403 when `policy` or `expires_at` is wider than the calling key's, its `param` the field
        (`params[field]` if named there, `param` if given). `fields`: only these are checked (None: all,
        the expiry among them)."""

        def refuse(field: str, why: str) -> None:
            named = param or (params or {}).get(field, field)
            raise PermissionDenied(f"{what} {why}", code=WIDER, param=named)

        def asked(field: str) -> bool:
            return fields is None or field in fields

        own = self.policy
        if own.models is not None and asked("models"):
            models = policy.get("models")
            listed = ", ".join(sorted(own.models))
            if models is None:
                refuse("models", f"would allow every model; the calling key allows only: {listed}")
            beyond = [m for m in models or () if not allows(own.models, m, self.resolve)]
            if beyond:
                refuse("models", f"would allow {beyond}, which the calling key does not (it allows {listed})")
        for field in ("rpm_limit", "tpm_limit"):
            bound = getattr(own, field)
            value = policy.get(field)
            if bound is not None and asked(field) and (value is None or value > bound):
                refuse(field, f"would have {field} {value or 'unlimited'}, above the calling key's {bound}")
        if own.max_budget_usd is not None and any(asked(f) for f in BUDGET):
            usd, duration = policy.get("max_budget_usd"), policy.get("budget_duration")
            mine = f"${own.max_budget_usd:g} {_DURATION[own.budget_duration]}"
            if usd is None or usd > own.max_budget_usd:
                shown = "no budget" if usd is None else f"a budget of ${usd:g}"
                refuse("max_budget_usd", f"would have {shown}, above the calling key's {mine}")
            if _RENEWS.get(duration, 2) < _RENEWS[own.budget_duration]:
                renews = _DURATION.get(duration, str(duration))
                refuse(
                    "budget_duration",
                    f"would have a budget {renews}, more often than the calling key's {mine}",
                )
        if self.expires_at is not None and (fields is None or "expires_at" in fields):
            ends = aware(expires_at)
            if ends is None or ends > self.expires_at:
                shown = "never expire" if ends is None else f"expire at {ends.isoformat()}"
                refuse("expires_at", f"would {shown}, after the calling key ({self.expires_at.isoformat()})")
