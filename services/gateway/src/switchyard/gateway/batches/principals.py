"""Who a batch runs as: the principal that created it, found again from what its record keeps (the
organisation, the user, the API key's id; never the key itself) when its lines run, so a key revoked or
expired, or a user disabled, meanwhile stops the lines not yet submitted."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.gateway.access import roles
from switchyard.gateway.models import ApiKey, Tenant, User
from switchyard.gateway.tenants import Principal

JWT = "jwt:"  # a single sign-on principal's key id (`access/oidc.py`): its user is what is checked


async def resolve(
    sessions: async_sessionmaker[AsyncSession], *, tenant_id: str, api_key_id: str, user_id: str | None
) -> Principal | None:
    """The principal as it stands now, or None when its credential no longer admits anything."""
    now = datetime.now(UTC)
    async with sessions() as s:
        tenant = await s.get(Tenant, tenant_id)
        user = await s.get(User, user_id) if user_id is not None else None
        key = None if api_key_id.startswith(JWT) else await s.get(ApiKey, api_key_id)
    if tenant is None or (user is not None and (user.tenant_id != tenant_id or user.disabled_at is not None)):
        return None
    if api_key_id.startswith(JWT):
        if user is None:
            return None
        role, scopes, prefix, expires_at = (
            user.role,
            roles.ROLE_SCOPES.get(user.role, frozenset()),
            "jwt",
            None,
        )
    else:
        if key is None or key.tenant_id != tenant_id or key.revoked_at is not None:
            return None
        expires_at = _aware(key.expires_at)
        if expires_at is not None and expires_at <= now:
            return None
        role = user.role if user is not None else roles.SERVICE_KEY_ROLE
        scopes, prefix = roles.effective_scopes(role, key.scopes), key.prefix
    if roles.INFERENCE not in scopes:
        return None
    return Principal(
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        user_id=user_id,
        key_prefix=prefix,
        role=role,
        scopes=scopes,
        plan=roles.plan_of(user.plan if user is not None else None, tenant.plan),
        org_monthly_budget_usd=tenant.monthly_budget_usd,
        platform=tenant.platform,
        expires_at=expires_at,
        key_policy=None if key is None else key.policy(),  # the key's models, limits and budget
        key_lineage=None if key is None else key.lineage_id,
    )


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
