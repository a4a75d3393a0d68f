"""The admin API: /v1/admin/... Each view authorises by scope, calls the service scoped to the caller's
organisation, records the change for the audit ledger and, for credentials, invalidates caches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from switchyard.gateway.access import erasure, roles, service
from switchyard.gateway.access.actor import Actor
from switchyard.gateway.access.ceiling import Ceiling
from switchyard.gateway.access.models import (
    CreatedKey,
    CreatedOrganization,
    Erased,
    KeyCreate,
    KeyDetail,
    KeyOut,
    KeyRotate,
    KeyUpdate,
    OrganizationCreate,
    OrganizationOut,
    OrganizationUpdate,
    UserCreate,
    UserOut,
    UserUpdate,
)
from switchyard.gateway.access.spend import key_spend
from switchyard.gateway.auth import require
from switchyard.gateway.cache.exact import left_cache
from switchyard.gateway.errors import PermissionDenied
from switchyard.gateway.openapi import ERRORS
from switchyard.gateway.state import Gateway, gateway_of

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERRORS)
Reader = Annotated[Actor, Depends(require(*roles.DIRECTORY_READ))]
Admin = Annotated[Actor, Depends(require(roles.ADMIN))]
Operator = Annotated[Actor, Depends(require(roles.ADMIN, platform=True))]


def _ceiling(actor: Actor, request: Request) -> Ceiling:
    """The calling key's policy and expiry, which no key it makes, changes or rotates may exceed."""
    return Ceiling.of(actor.principal, gateway_of(request).catalog.policy.resolve)


def _created(plaintext: str, key: object) -> CreatedKey:
    return CreatedKey.model_validate({**KeyOut.model_validate(key).model_dump(), "key": plaintext})


@router.get("/organization", response_model=OrganizationOut, summary="The caller's organisation")
async def get_organization(actor: Reader) -> object:
    return await service.get_organization(actor.sessions, tenant_id=actor.tenant_id)


@router.patch(
    "/organization",
    response_model=OrganizationOut,
    summary="Change the monthly budget (the plan: the platform operator's organisation only)",
)
async def update_organization(body: OrganizationUpdate, request: Request, actor: Admin) -> object:
    if "plan" in body.model_fields_set and not actor.principal.platform:
        raise PermissionDenied(
            "an organisation's plan (its users' daily budgets, caches and guardrails) is set by the platform "
            "operator (PATCH /v1/admin/organizations/{id}); its admins set its monthly_budget_usd"
        )
    return await _update_organization(actor, actor.tenant_id, body, request)


@router.patch(
    "/organizations/{org_id}",
    response_model=OrganizationOut,
    summary="Change an organisation's plan or monthly budget (platform operator only)",
)
async def update_any_organization(
    org_id: str, body: OrganizationUpdate, request: Request, actor: Operator
) -> object:
    return await _update_organization(actor, org_id, body, request)


async def _update_organization(
    actor: Actor, org_id: str, body: OrganizationUpdate, request: Request
) -> object:
    org = await service.update_organization(
        actor.sessions, tenant_id=org_id, changes=body, ceiling=_ceiling(actor, request)
    )
    await actor.invalidate("org", org.id)
    changed = service.changed_fields(body)
    await actor.record("organization.updated", "organization", org.id, changed, tenant_id=org.id)
    return org


async def _plan_allowed(actor: Actor, plan: str | None) -> None:
    """A user's plan is at most their organisation's: an organisation admin cannot give its users budgets,
    caches or guardrails of a plan the platform operator did not give the organisation."""
    if plan is None or actor.principal.platform:
        return
    org = await service.get_organization(actor.sessions, tenant_id=actor.tenant_id)
    if roles.above(plan, org.plan):
        raise PermissionDenied(
            f"a user's plan cannot be above their organisation's ({org.plan}); "
            "the platform operator sets the organisation's"
        )


@router.post(
    "/organizations",
    response_model=CreatedOrganization,
    status_code=201,
    summary="Create an organisation with its first admin (platform operator only)",
)
async def create_organization(
    body: OrganizationCreate, request: Request, actor: Operator
) -> CreatedOrganization:
    org, user, plaintext, key = await service.create_organization(
        actor.sessions, spec=body, ceiling=_ceiling(actor, request)
    )
    # before the answer: a task submitted on the bus for it at once is not refused as an unknown tenant
    await gateway_of(request).registry.created(org.id, org.name)
    await actor.record(
        "organization.created", "organization", org.id, body.model_dump(mode="json"), tenant_id=org.id
    )
    return CreatedOrganization(
        organization=OrganizationOut.model_validate(org),
        admin=UserOut.model_validate(user),
        key=_created(plaintext, key),
    )


@router.post(
    "/organizations/{org_id}/erase",
    response_model=Erased,
    summary="Erase an organisation's stored content and revoke its keys (platform operator only)",
)
async def erase_organization(org_id: str, request: Request, actor: Operator) -> Erased:
    gateway = gateway_of(request)
    cache = gateway.cache
    erased = await erasure.erase_organization(
        actor.sessions,
        tenant_id=org_id,
        responses=gateway.responses or gateway.responses_left,
        files=gateway.files,
        batches=gateway.batches.store if gateway.batches is not None else None,
        cache=cache.store if cache is not None else await left_cache(gateway.nc.jetstream()),
        index=cache.index if cache is not None else None,
        closed=lambda: closed(gateway, actor, org_id),
        js=gateway.nc.jetstream(),
    )
    counts = erased.model_dump(exclude={"organization_id"})
    await actor.record("organization.erased", "organization", org_id, counts, tenant_id=org_id)
    return erased


async def closed(gateway: Gateway, actor: Actor, org_id: str) -> None:
    """Its keys revoked: every replica drops them, and the pipeline refuses its tasks (the registry)."""
    await actor.invalidate("org", org_id)
    org = await service.get_organization(actor.sessions, tenant_id=org_id)
    await gateway.registry.erased(org_id, org.name)


@router.get("/users", response_model=list[UserOut], summary="The organisation's users")
async def list_users(actor: Reader) -> object:
    return await service.list_users(actor.sessions, tenant_id=actor.tenant_id)


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a user")
async def create_user(body: UserCreate, request: Request, actor: Admin) -> object:
    await _plan_allowed(actor, body.plan)
    user = await service.create_user(
        actor.sessions, tenant_id=actor.tenant_id, spec=body, ceiling=_ceiling(actor, request)
    )
    await actor.record("user.created", "user", user.id, body.model_dump(mode="json"))
    return user


@router.get("/users/{user_id}", response_model=UserOut, summary="One user")
async def get_user(user_id: str, actor: Reader) -> object:
    return await service.get_user(actor.sessions, tenant_id=actor.tenant_id, user_id=user_id)


@router.patch("/users/{user_id}", response_model=UserOut, summary="Change a user's role, plan or name")
async def update_user(user_id: str, body: UserUpdate, request: Request, actor: Admin) -> object:
    await _plan_allowed(actor, body.plan)
    user = await service.update_user(
        actor.sessions,
        tenant_id=actor.tenant_id,
        user_id=user_id,
        changes=body,
        ceiling=_ceiling(actor, request),
    )
    await actor.invalidate("user", user.id)
    await actor.record("user.updated", "user", user.id, service.changed_fields(body))
    return user


@router.delete("/users/{user_id}", response_model=UserOut, summary="Disable a user and revoke their keys")
async def disable_user(user_id: str, actor: Admin) -> object:
    user = await service.disable_user(actor.sessions, tenant_id=actor.tenant_id, user_id=user_id)
    await actor.invalidate("user", user.id)
    await actor.record("user.disabled", "user", user.id)
    return user


@router.get("/keys", response_model=list[KeyOut], summary="The organisation's API keys (never the keys)")
async def list_keys(actor: Reader, user_id: str | None = None) -> object:
    return await service.list_keys(actor.sessions, tenant_id=actor.tenant_id, user_id=user_id)


@router.post("/keys", response_model=CreatedKey, status_code=201, summary="Create a key (shown once)")
async def create_key(body: KeyCreate, request: Request, actor: Admin) -> CreatedKey:
    gateway_of(request).catalog.check_listable(body.models)
    plaintext, key = await service.create_key(
        actor.sessions,
        tenant_id=actor.tenant_id,
        spec=body,
        default_user_id=actor.principal.user_id,
        grantable=actor.principal.scopes,
        ceiling=_ceiling(actor, request),
    )
    # what the key got (left out: the caller's limits), as well as what was asked
    made = KeyOut.model_validate(key).model_dump(mode="json", exclude={"id", "created_at", "revoked_at"})
    await actor.record("key.created", "key", key.id, {**body.model_dump(mode="json"), **made})
    return _created(plaintext, key)


@router.get("/keys/{key_id}", response_model=KeyDetail, summary="One key's metadata, policy and spend")
async def get_key(key_id: str, request: Request, actor: Reader) -> KeyDetail:
    key = await service.get_key(actor.sessions, tenant_id=actor.tenant_id, key_id=key_id)
    spend = await key_spend(gateway_of(request).admission.budgets, key)
    return KeyDetail.model_validate({**KeyOut.model_validate(key).model_dump(), "spend": spend})


@router.patch("/keys/{key_id}", response_model=KeyOut, summary="Change a key's models, limits or budget")
async def update_key(key_id: str, body: KeyUpdate, request: Request, actor: Admin) -> object:
    gateway_of(request).catalog.check_listable(body.models)
    key = await service.update_key(
        actor.sessions,
        tenant_id=actor.tenant_id,
        key_id=key_id,
        changes=body,
        ceiling=_ceiling(actor, request),
    )
    await actor.invalidate("key", key.id)
    if key.counts_as != key.id:  # the keys it minted know it by its lineage (their minters' budgets)
        await actor.invalidate("key", key.counts_as)
    await actor.record("key.updated", "key", key.id, service.changed_fields(body))
    return key


@router.post("/keys/{key_id}/rotate", response_model=CreatedKey, status_code=201, summary="Rotate a key")
async def rotate_key(
    key_id: str, request: Request, actor: Admin, body: KeyRotate | None = None
) -> CreatedKey:
    body = body or KeyRotate()  # no body: grace_s 0, as an empty object
    plaintext, new, old = await service.rotate_key(
        actor.sessions,
        tenant_id=actor.tenant_id,
        key_id=key_id,
        grace_s=body.grace_s,
        grantable=actor.principal.scopes,
        ceiling=_ceiling(actor, request),
        caller_user_id=actor.principal.user_id,
        listable=gateway_of(request).catalog.check_rotatable,
    )
    await actor.invalidate("key", old.id)
    await actor.record(
        "key.rotated", "key", old.id, {"new_key_id": new.id, "prefix": new.prefix, "grace_s": body.grace_s}
    )
    return _created(plaintext, new)


@router.delete("/keys/{key_id}", response_model=KeyOut, summary="Revoke a key (everywhere, at once)")
async def revoke_key(key_id: str, actor: Admin) -> object:
    key = await service.revoke_key(actor.sessions, tenant_id=actor.tenant_id, key_id=key_id)
    await actor.invalidate("key", key.id)
    await actor.record("key.revoked", "key", key.id, {"prefix": key.prefix})
    return key
