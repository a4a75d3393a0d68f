"""Billing queries over core NATS request/reply (`switchyard.usage.rpc.*`): decode, call the domain
function for the tenant named in the request, encode. Formats: `switchyard.common.billing_rpc`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from faststream.exceptions import SkipMessage
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing import spend, webhooks
from switchyard.billing.reports import usage_report
from switchyard.billing.statements import monthly_statement
from switchyard.common import bus_guard, subjects
from switchyard.common.billing_rpc import (
    ForecastQuery,
    SavingsQuery,
    StatementQuery,
    UsageQuery,
    WebhookCreate,
    WebhookList,
    WebhookRef,
    Webhooks,
    range_problem,
)
from switchyard.common.bus_auth import NatsCredentials
from switchyard.common.errors import SwitchyardError
from switchyard.common.policy import Policy
from switchyard.common.policy_source import PolicySource, current_of

log = logging.getLogger(__name__)
Work = Callable[[Any], Awaitable[BaseModel]]


def error_reply(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


async def answer(raw: bytes, model: type[BaseModel], work: Work) -> bytes:
    try:
        request = model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        said = range_problem(first, start="start", end="end") or f"{where}: {first['msg']}"
        return error_reply("invalid_request", said)
    try:
        return (await work(request)).model_dump_json().encode()
    except webhooks.NotFound as exc:
        return error_reply("not_found", str(exc))
    except SwitchyardError as exc:
        return error_reply(exc.code, exc.message)
    except Exception:
        log.exception("billing request on %s failed", model.__name__)
        return error_reply("internal_error", "the billing service could not answer; see its log")


def register(
    broker: NatsBroker,
    sessions: async_sessionmaker[AsyncSession],
    *,
    policy: Policy | PolicySource,
    box: Callable[[], webhooks.SecretBox],
    allow_private: bool = True,
    me: NatsCredentials | None = None,
) -> None:
    """Answers billing's RPCs, each only for an allowed caller (`bus_guard.rpc_reply_prefixes` for `me`,
    this service's NATS user)."""
    allowed = bus_guard.rpc_reply_prefixes(subjects.BILLING_RPC_PREFIX, me)
    policy_in_force = current_of(policy)

    async def usage(q: UsageQuery) -> BaseModel:
        return await usage_report(sessions, q)

    async def statement(q: StatementQuery) -> BaseModel:
        return await monthly_statement(sessions, q)

    async def savings(q: SavingsQuery) -> BaseModel:
        return await spend.savings(sessions, q, policy=policy_in_force())

    async def forecast(q: ForecastQuery) -> BaseModel:
        return await spend.forecast(sessions, q)

    async def create(q: WebhookCreate) -> BaseModel:
        return await webhooks.create_endpoint(
            sessions,
            box(),
            tenant_id=q.tenant_id,
            url=q.url,
            description=q.description,
            allow_private=allow_private,
        )

    async def listing(q: WebhookList) -> BaseModel:
        return Webhooks(data=await webhooks.webhooks(sessions, tenant_id=q.tenant_id))

    async def delete(q: WebhookRef) -> BaseModel:
        return await webhooks.delete_endpoint(sessions, tenant_id=q.tenant_id, endpoint_id=q.id)

    routes: list[tuple[str, type[BaseModel], Work]] = [
        (subjects.BILLING_RPC_USAGE, UsageQuery, usage),
        (subjects.BILLING_RPC_STATEMENT, StatementQuery, statement),
        (subjects.BILLING_RPC_SAVINGS, SavingsQuery, savings),
        (subjects.BILLING_RPC_FORECAST, ForecastQuery, forecast),
        (subjects.BILLING_RPC_WEBHOOK_CREATE, WebhookCreate, create),
        (subjects.BILLING_RPC_WEBHOOK_LIST, WebhookList, listing),
        (subjects.BILLING_RPC_WEBHOOK_DELETE, WebhookRef, delete),
    ]
    for subject, model, work in routes:
        _route(broker, subject, model, work, allowed)


def _route(
    broker: NatsBroker, subject: str, model: type[BaseModel], work: Work, allowed: tuple[str, ...]
) -> None:
    @broker.subscriber(subject, queue=subjects.BILLING_RPC_QUEUE, include_in_schema=False)
    async def handle(msg: NatsMessage) -> bytes:
        if bus_guard.refused_rpc(msg.raw_message, allowed, subscription=subject):
            raise SkipMessage  # no answer: its reply subject is no caller's
        return await answer(msg.raw_message.data, model, work)
