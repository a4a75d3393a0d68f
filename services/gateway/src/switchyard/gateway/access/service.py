"""Organisations, users and keys: plain domain functions (no web framework), every one scoped to the
tenant it is given. Another tenant's row is reported as not found, never as forbidden, so ids do not leak
across organisations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import false, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.gateway import tenants
from switchyard.gateway.access import roles
from switchyard.gateway.access.ceiling import Ceiling
from switchyard.gateway.access.models import (
    KeyCreate,
    KeyPolicyFields,
    KeyUpdate,
    OrganizationCreate,
    OrganizationUpdate,
    UserCreate,
    UserUpdate,
)
from switchyard.gateway.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, shown
from switchyard.gateway.models import ApiKey, Tenant, User

Sessions = async_sessionmaker[AsyncSession]

ERASED = "organization_erased"


def _not_erased(org: Tenant) -> None:
    """An erased organisation is not changed any more (its plan, budget, users and keys): 409. Its keys
    are revoked, so only the operator reaches it, or one of its keys a replica has not dropped yet."""
    if org.erased_at is not None:
        raise Conflict(
            f"the organisation {org.id} was erased: it is not changed any more", code=ERASED, retry=False
        )


async def _writable(s: AsyncSession, tenant_id: str) -> None:
    org = await s.get(Tenant, tenant_id)
    if org is not None:
        _not_erased(org)


async def get_organization(sessions: Sessions, *, tenant_id: str) -> Tenant:
    async with sessions() as s:
        org = await s.get(Tenant, tenant_id)
    if org is None:
        raise NotFound("organisation not found")
    return org


async def update_organization(
    sessions: Sessions, *, tenant_id: str, changes: OrganizationUpdate, ceiling: Ceiling | None = None
) -> Tenant:
    """`ceiling`: the calling key's; a key with limits of its own may lower the monthly budget or plan but
    not raise (or lift) them (403 `key_wider_than_caller`)."""
    values = changes.model_dump(exclude_unset=True)
    async with sessions.begin() as s:
        org = await s.get(Tenant, tenant_id, with_for_update=True)
        if org is None:
            raise NotFound("organisation not found")
        _not_erased(org)
        if ceiling is not None and "monthly_budget_usd" in values:
            usd, now = values["monthly_budget_usd"], org.monthly_budget_usd
            if now is not None and (usd is None or usd > now):
                shown = "no monthly budget" if usd is None else f"a monthly budget of ${usd:g}"
                ceiling.widen(
                    "monthly_budget_usd", f"the organisation would have {shown}, above its ${now:g}"
                )
        if ceiling is not None and "plan" in values and roles.above(values["plan"], org.plan):
            ceiling.widen("plan", f"the organisation's plan would be {values['plan']}, above its {org.plan}")
        for name, value in values.items():
            setattr(org, name, value)
    return org


async def create_organization(
    sessions: Sessions, *, spec: OrganizationCreate, ceiling: Ceiling | None = None
) -> tuple[Tenant, User, str, ApiKey]:
    """A new organisation with its first admin user and key (the plaintext key is returned once). The key
    takes the calling key's policy and expiry (`ceiling`): a restricted operator key mints no wider one."""
    try:
        org = await tenants.create_tenant(
            sessions, name=spec.name, plan=spec.plan, monthly_budget_usd=spec.monthly_budget_usd
        )
    except IntegrityError as exc:
        raise Conflict(f"an organisation named {spec.name!r} exists", param="name", retry=False) from exc
    admin = await tenants.create_user(sessions, tenant_id=org.id, email=spec.admin_email, role="admin")
    plaintext, key = await tenants.create_api_key(
        sessions,
        tenant_id=org.id,
        user_id=admin.id,
        name="first admin key",
        scopes=roles.default_scopes("admin"),
        expires_at=None if ceiling is None else ceiling.expires_at,
        policy=None if ceiling is None else ceiling.fill({}, ()),
    )
    return org, admin, plaintext, key


async def list_users(sessions: Sessions, *, tenant_id: str) -> list[User]:
    async with sessions() as s:
        rows = await s.execute(select(User).where(User.tenant_id == tenant_id).order_by(User.created_at))
    return list(rows.scalars())


async def get_user(sessions: Sessions, *, tenant_id: str, user_id: str) -> User:
    async with sessions() as s:
        user = await s.get(User, user_id)
    if user is None or user.tenant_id != tenant_id:
        raise NotFound(f"no user {shown(user_id)} in this organisation", param="user_id")
    return user


async def create_user(
    sessions: Sessions, *, tenant_id: str, spec: UserCreate, ceiling: Ceiling | None = None
) -> User:
    """`ceiling`: the calling key's; a key with limits of its own makes no admin (403)."""
    if ceiling is not None and spec.role == "admin":
        ceiling.widen(
            "role", "the new user would be an admin (their own keys and sign-on without your limits)"
        )
    async with sessions() as s:
        await _writable(s, tenant_id)
    try:
        return await tenants.create_user(
            sessions, tenant_id=tenant_id, email=spec.email, name=spec.name, role=spec.role, plan=spec.plan
        )
    except IntegrityError as exc:
        raise Conflict(f"a user with email {spec.email!r} exists", param="email", retry=False) from exc


async def _lock_organization(s: AsyncSession, tenant_id: str) -> None:
    """Holds the organisation's admin changes (role, disabling) one at a time until this transaction
    ends, on every replica: PostgreSQL locks its row (FOR UPDATE); SQLite takes the database's write lock
    with a write first (another writer waits on the busy timeout, then reads what this one committed)."""
    if s.get_bind().dialect.name == "postgresql":
        await s.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    else:
        await s.execute(update(Tenant).where(Tenant.id == tenant_id, false()).values(plan=Tenant.plan))


async def _keep_an_admin(s: AsyncSession, user: User, what: str, param: str) -> None:
    """409 when `user` is their organisation's last enabled admin: without one, nobody could manage its
    users and keys (the operator manages organisations, not their users). In the transaction that makes
    the change, after `_lock_organization`: two admins demoted at once both saw the other one and both
    went, leaving none."""
    if user.role != "admin" or user.disabled_at is not None:
        return
    others = select(func.count()).where(
        User.tenant_id == user.tenant_id,
        User.role == "admin",
        User.disabled_at.is_(None),
        User.id != user.id,
    )
    if not await s.scalar(others):
        raise Conflict(
            f"the user {user.id} is the organisation's last admin and cannot be {what}: make another "
            "user admin first",
            param=param,
            retry=False,
        )


async def update_user(
    sessions: Sessions,
    *,
    tenant_id: str,
    user_id: str,
    changes: UserUpdate,
    ceiling: Ceiling | None = None,
) -> User:
    """`ceiling`: the calling key's; a key with limits of its own raises no user's plan and makes no admin
    (403 `key_wider_than_caller`)."""
    await get_user(sessions, tenant_id=tenant_id, user_id=user_id)
    async with sessions.begin() as s:
        await _lock_organization(s, tenant_id)
        await _writable(s, tenant_id)
        user = await s.get(User, user_id, populate_existing=True)
        assert user is not None
        if ceiling is not None:
            await _no_wider_user(s, ceiling, user, changes)
        if changes.role is not None and changes.role != "admin":
            await _keep_an_admin(s, user, "demoted", "role")
        for name, value in changes.model_dump(exclude_unset=True).items():
            setattr(user, name, value)
        if "oidc_subject" in changes.model_fields_set:  # unlinked: the next sign-on links by email
            user.oidc_issuer = None
    return user


async def _no_wider_user(s: AsyncSession, ceiling: Ceiling, user: User, changes: UserUpdate) -> None:
    if changes.role == "admin" and user.role != "admin":
        ceiling.widen(
            "role", f"the user {user.id} would be an admin (their keys and sign-on without your limits)"
        )
    if "plan" in changes.model_fields_set:
        org = await s.get(Tenant, user.tenant_id)
        assert org is not None
        now, then = roles.plan_of(user.plan, org.plan), roles.plan_of(changes.plan, org.plan)
        if roles.above(then, now):
            ceiling.widen("plan", f"the user {user.id} would be on the {then} plan, above their {now}")


async def disable_user(sessions: Sessions, *, tenant_id: str, user_id: str) -> User:
    """Disables the user and revokes every key of theirs (not the organisation's last admin: 409)."""
    await get_user(sessions, tenant_id=tenant_id, user_id=user_id)
    now = datetime.now(UTC)
    async with sessions.begin() as s:
        await _lock_organization(s, tenant_id)
        user = await s.get(User, user_id, populate_existing=True)
        assert user is not None
        await _keep_an_admin(s, user, "disabled", "user_id")
        user.disabled_at = user.disabled_at or now
        await s.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return user


async def close_organization(sessions: Sessions, *, tenant_id: str) -> tuple[int, int]:
    """Revokes every key of the organisation and disables every user of it, and marks it erased (an
    erasure: nobody acts for it any more, on the bus either); how many keys and users that changed (0
    and 0 the second time). NotFound for none."""
    await get_organization(sessions, tenant_id=tenant_id)
    now = datetime.now(UTC)
    async with sessions.begin() as s:
        org = await s.get(Tenant, tenant_id)
        assert org is not None
        org.erased_at = org.erased_at or now
        keys = await s.execute(
            update(ApiKey)
            .where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        users = await s.execute(
            update(User)
            .where(User.tenant_id == tenant_id, User.disabled_at.is_(None))
            .values(disabled_at=now)
        )
    return int(getattr(keys, "rowcount", 0) or 0), int(getattr(users, "rowcount", 0) or 0)


async def list_keys(sessions: Sessions, *, tenant_id: str, user_id: str | None = None) -> list[ApiKey]:
    """`user_id`: only that user's, one of the organisation (NotFound otherwise, as `create_key` says)."""
    query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
    if user_id is not None:
        await get_user(sessions, tenant_id=tenant_id, user_id=user_id)
        query = query.where(ApiKey.user_id == user_id)
    async with sessions() as s:
        rows = await s.execute(query.order_by(ApiKey.created_at))
    return list(rows.scalars())


async def get_key(sessions: Sessions, *, tenant_id: str, key_id: str) -> ApiKey:
    async with sessions() as s:
        key = await s.get(ApiKey, key_id)
    if key is None or key.tenant_id != tenant_id:
        raise NotFound(f"no key {shown(key_id)} in this organisation", param="key_id")
    return key


def _within(scopes: set[str] | frozenset[str], grantable: frozenset[str] | None, what: str) -> None:
    """A key cannot hand out more than it holds: `grantable` is the calling key's effective scopes (None:
    no caller, an operator's tool)."""
    beyond = sorted(set(scopes) - grantable) if grantable is not None else []
    if beyond:
        raise PermissionDenied(
            f"{what} would hold the scopes {beyond}, which the calling key does not have", param="scopes"
        )


async def create_key(
    sessions: Sessions,
    *,
    tenant_id: str,
    spec: KeyCreate,
    default_user_id: str | None,
    grantable: frozenset[str] | None = None,
    ceiling: Ceiling | None = None,
) -> tuple[str, ApiKey]:
    """`grantable`: the caller's scopes; the key's may not exceed them (by default, what both allow).
    `ceiling`: the calling key's policy and expiry, which the new key's may not exceed either (those left
    out are the calling key's: access/ceiling.py), and the keys whose budgets its spend also counts
    against (`Ceiling.ancestors`: the calling key's lineage and its own minters)."""
    async with sessions() as s:
        await _writable(s, tenant_id)
    user_id = spec.user_id or default_user_id
    if user_id is None:
        role = roles.SERVICE_KEY_ROLE
    else:
        user = await get_user(sessions, tenant_id=tenant_id, user_id=user_id)
        if user.disabled_at is not None:
            raise InvalidRequest(f"user {user_id!r} is disabled", param="user_id")
        role = user.role
    allowed = roles.ROLE_SCOPES[role]
    if spec.scopes is None:
        scopes = sorted(allowed & grantable if grantable is not None else allowed)
        if not scopes:
            raise PermissionDenied(
                f"the calling key holds none of the scopes the role {role!r} allows", param="scopes"
            )
    else:
        scopes = spec.scopes
    beyond = sorted(set(scopes) - allowed)
    if beyond:
        raise InvalidRequest(f"the role {role!r} does not allow scopes {beyond}", param="scopes")
    _within(set(scopes), grantable, "the new key")
    policy = spec.model_dump(include=set(KeyPolicyFields.model_fields))
    expires_at = tenants.expiry_in(spec.expires_in_s)
    if ceiling is not None:
        sent = spec.model_fields_set
        policy = ceiling.fill(policy, sent)
        if "expires_in_s" not in sent and ceiling.expires_at is not None:
            expires_at = ceiling.expires_at
        ceiling.check(policy, expires_at=expires_at, params={"expires_at": "expires_in_s"})
    return await tenants.create_api_key(
        sessions,
        tenant_id=tenant_id,
        user_id=user_id,
        name=spec.name,
        scopes=" ".join(scopes),
        expires_at=expires_at,
        policy=policy,
        ancestors=() if ceiling is None else ceiling.ancestors,
    )


async def update_key(
    sessions: Sessions, *, tenant_id: str, key_id: str, changes: KeyUpdate, ceiling: Ceiling | None = None
) -> ApiKey:
    """Changes the key's policy: the fields sent (null removes one), the others kept. `ceiling`: the
    calling key's, which no field sent may exceed (the key's own included: no key lifts its limits)."""
    await get_key(sessions, tenant_id=tenant_id, key_id=key_id)
    async with sessions.begin() as s:
        await _writable(s, tenant_id)
        key = await s.get(ApiKey, key_id)
        assert key is not None
        sent = changes.model_dump(exclude_unset=True)
        policy = {**key.policy_columns(), **sent}
        if ceiling is not None:
            ceiling.check(policy, fields=set(sent), what=f"the key {key_id}")
        for name, value in policy.items():
            setattr(key, name, value)
    return key


async def revoke_key(sessions: Sessions, *, tenant_id: str, key_id: str) -> ApiKey:
    await get_key(sessions, tenant_id=tenant_id, key_id=key_id)
    async with sessions.begin() as s:
        key = await s.get(ApiKey, key_id)
        assert key is not None
        key.revoked_at = key.revoked_at or datetime.now(UTC)
    return key


async def rotate_key(
    sessions: Sessions,
    *,
    tenant_id: str,
    key_id: str,
    grace_s: float,
    grantable: frozenset[str] | None = None,
    ceiling: Ceiling | None = None,
    caller_user_id: str | None = None,
    listable: Callable[[str, list[str] | None], None] | None = None,
) -> tuple[str, ApiKey, ApiKey]:
    """A new key with the same user, name, scopes and policy, counting in the same counters (its lineage,
    `ApiKey.counts_as`: what its budget has spent this period stays spent, and the old key during its grace
    spends from it too); the old one is revoked now (grace 0) or expires after `grace_s`, so clients can
    switch without an outage (never past the old key's own expiry). The caller receives the new key, so
    it must hold every scope of it (`grantable`, as `create_key`), be at least as wide (`ceiling`), and be
    the key's user (`caller_user_id`; a key without a user is the organisation's, any admin's to rotate):
    another user's secret would let the caller act as them, every request recorded as theirs; their key
    is revoked instead, and they (or an admin, recorded as making it for them) make a new one. None for
    either: not checked (an operator's tool). `listable(key id, models)` refuses a model list naming models
    the policy no longer has (the gateway's catalogue; None: not checked). Returns (plaintext, new, old)."""
    old = await get_key(sessions, tenant_id=tenant_id, key_id=key_id)
    async with sessions() as s:
        await _writable(s, tenant_id)
    if caller_user_id is not None and old.user_id not in (None, caller_user_id):
        raise PermissionDenied(
            f"the key {key_id} belongs to the user {old.user_id}: only they may rotate it (its new secret "
            "would let you act as them); revoke it (DELETE /v1/admin/keys/{id}) and create them a new one",
            param="key_id",
        )
    if old.revoked_at is not None:
        raise InvalidRequest("a revoked key cannot be rotated", param="key_id")
    if tenants.expired(old.expires_at):  # its successor would expire with it: born dead
        raise InvalidRequest("an expired key cannot be rotated: create a new key", param="key_id")
    if old.rotated_to is not None:  # in its grace period: a second successor would leave the first live
        raise InvalidRequest(
            f"the key {key_id} was rotated to {old.rotated_to} (it lasts out its grace period): "
            "rotate that one",
            param="key_id",
        )
    _within(set(old.scopes.split()), grantable, "the rotated key")
    if ceiling is not None:
        ceiling.check(old.policy_columns(), expires_at=old.expires_at, what="the rotated key", param="key_id")
    if listable is not None:
        listable(old.id, old.models)
    plaintext, new = await tenants.create_api_key(
        sessions,
        tenant_id=tenant_id,
        user_id=old.user_id,
        name=old.name,
        scopes=old.scopes,
        expires_at=old.expires_at,
        policy=old.policy_columns(),
        lineage_id=old.counts_as,
        ancestors=old.ancestors or (),
    )
    now = datetime.now(UTC)
    async with sessions.begin() as s:
        row = await s.get(ApiKey, key_id)
        assert row is not None
        row.rotated_to = new.id
        if grace_s == 0:
            row.revoked_at = now
        else:
            ends = now + timedelta(seconds=grace_s)
            expires = tenants.aware(row.expires_at)
            row.expires_at = ends if expires is None else min(expires, ends)
    return plaintext, new, row


def changed_fields(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(mode="json", exclude_unset=True))
