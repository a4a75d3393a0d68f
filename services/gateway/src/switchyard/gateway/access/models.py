"""The admin API's request and response bodies. Keys are shown by id and prefix; the plaintext appears
exactly once, in the response that created it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from switchyard.gateway.access.roles import SCOPES, Plan, Role
from switchyard.gateway.key_policy import BudgetDuration

_EMAIL = r"^[^@\s]+@[^@\s]+$"
MAX_BUDGET_USD = 1e9  # a month's budget; above it a number is a typo, and `inf` overflowed the counters
MAX_KEY_LIFETIME_S = 10 * 366 * 86400.0  # ten years; a key that should outlive that never expires (null)
MAX_KEY_MODELS = 100
MAX_PER_MIN = 10**9  # above it a limit is a typo (the counters hold far more)
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganizationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    plan: str
    platform: bool
    monthly_budget_usd: float | None
    created_at: datetime


class OrganizationUpdate(_Body):
    plan: Plan | None = Field(default=None, description="leave out to keep it; an organisation has a plan")
    monthly_budget_usd: float | None = Field(
        default=None, ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False, description="null: unlimited"
    )

    @field_validator("plan")
    @classmethod
    def _plan_not_null(cls, v: Plan | None) -> Plan:  # runs only for a plan that was sent
        if v is None:
            raise ValueError("cannot be null: send free, pro or enterprise, or leave it out")
        return v


class OrganizationCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    plan: Plan = "free"
    monthly_budget_usd: float | None = Field(default=None, ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)
    admin_email: str = Field(pattern=_EMAIL, max_length=320, description="its first admin user")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    name: str
    role: str
    plan: str | None
    created_at: datetime
    disabled_at: datetime | None
    oidc_issuer: str | None = Field(
        description="the identity provider of the account bound by single sign-on"
    )
    oidc_subject: str | None = Field(
        description="that account's subject (`sub`); null: none yet, the next sign-on links by email"
    )


class UserCreate(_Body):
    email: str = Field(pattern=_EMAIL, max_length=320)
    name: str = Field(default="", max_length=200)
    role: Role = "member"
    plan: Plan | None = Field(
        default=None, description="sets the daily budget; null: the organisation's plan"
    )


class UserUpdate(_Body):
    name: str | None = Field(default=None, max_length=200)
    role: Role | None = None
    plan: Plan | None = Field(default=None, description="null: the organisation's plan")
    oidc_subject: None = Field(
        default=None,
        description="null unlinks the user's identity-provider account: their next single sign-on links "
        "them by email again (an account replaced at the provider); nothing else may be set",
    )

    @field_validator("name", "role")
    @classmethod
    def _not_null(cls, v: str | None) -> str:  # runs only for a field that was sent
        if v is None:
            raise ValueError("cannot be null: send a value, or leave it out to keep it")
        return v


class KeyPolicyFields(BaseModel):
    """A key's own policy (null or left out: none of that kind; README "Key policies")."""

    models: list[ModelName] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_MODELS,
        description="the models (ids or aliases) the key may use; list `auto` to let it route among them; "
        "null: every model",
    )
    rpm_limit: int | None = Field(default=None, ge=0, le=MAX_PER_MIN, description="requests per minute")
    tpm_limit: int | None = Field(
        default=None, ge=0, le=MAX_PER_MIN, description="tokens per minute (prompt and max output, settled)"
    )
    max_budget_usd: float | None = Field(
        default=None,
        ge=0,
        le=MAX_BUDGET_USD,
        allow_inf_nan=False,
        description="USD per budget_duration; without one, in all (a lifetime budget)",
    )
    budget_duration: BudgetDuration | None = Field(
        default=None,
        description="1d: the UTC day; 1mo: the calendar month (UTC); null with a budget: it never renews",
    )

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else list(dict.fromkeys(v))


class KeyOut(KeyPolicyFields):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    user_id: str | None
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_to: str | None

    @field_validator("scopes", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return v.split() if isinstance(v, str) else v


class KeySpend(BaseModel):
    """What a key with a budget has spent in its current period (reservations of running requests
    included, and up to 1/64 of what was left leased by another replica: README "Budgets")."""

    period: str = Field(description="YYYYMMDD (1d) or YYYYMM (1mo), UTC; `lifetime` (no budget_duration)")
    spent_usd: float
    max_budget_usd: float
    remaining_usd: float
    resets_at: datetime | None = Field(description="null: a lifetime budget, which never renews")


class KeyDetail(KeyOut):
    spend: KeySpend | None = Field(description="null: the key has no budget (or budgets are off)")


class KeyCreate(KeyPolicyFields, _Body):
    name: str = Field(min_length=1, max_length=200)
    user_id: str | None = Field(
        default=None, min_length=1, description="the key acts as this user; default (left out): the caller"
    )
    scopes: list[str] | None = Field(
        default=None, min_length=1, description="default: everything the user's role allows"
    )
    expires_in_s: float | None = Field(
        default=None, gt=0, le=MAX_KEY_LIFETIME_S, allow_inf_nan=False, description="null: never expires"
    )

    @field_validator("scopes")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        unknown = sorted(set(v or ()) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; scopes are {list(SCOPES)}")
        return v


class KeyUpdate(KeyPolicyFields, _Body):
    """The fields sent are changed (null removes one); those left out are kept."""


class KeyRotate(_Body):
    grace_s: float = Field(
        default=0, ge=0, le=7 * 24 * 3600, description="how long the old key keeps working (0: revoked now)"
    )


class CreatedKey(KeyOut):
    key: str = Field(description="the key itself: shown once, never stored")


class CreatedOrganization(BaseModel):
    organization: OrganizationOut
    admin: UserOut
    key: CreatedKey


class ThrottleSet(_Body):
    requests_per_min: int | None = Field(
        default=None,
        ge=0,
        description="global requests per minute while it lasts (0: refuse all); null: lift it",
    )


class Throttle(BaseModel):
    requests_per_min: int | None
    global_limit: int


class Erased(BaseModel):
    """What one erasure run removed: counts, never content."""

    organization_id: str
    keys_revoked: int
    users_disabled: int
    stored_responses: int
    conversations: int
    stored_other_keys: int = Field(description="deleted records' markers and the usage record")
    files: int
    file_bytes: int
    batches: int
    unfinished_batches: int = Field(description="batches that had not ended: their runners stop")
    cache_keys: int = Field(description="cached answers and their hit counts")
    semantic_cache: bool = Field(description="whether this replica's semantic index forgot its vectors")
    tasks: int = Field(0, description="task API tasks (their answers) and their Idempotency-Key claims")
    batch_vectors: int = Field(
        0, description="embedding results' vectors in the object stores (a batch line's are kept 3 days)"
    )
    events_deleted: int = Field(
        0, description="its task events (prompts, answers) deleted from the events and dead-letter streams"
    )
    events_left: int = Field(
        0,
        description="its task events a consumer (ledger, billing) had not read yet: a run again deletes them",
    )
    events_deadline_reached: bool = Field(
        False, description="the streams were not read whole within 60 s: run it again for the rest"
    )
