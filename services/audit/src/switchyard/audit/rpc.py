"""The ledger over core NATS request/reply (`switchyard.ledger.rpc.*`): decode, call `proofs` or
`digest_check`, encode. Never logs a request: a digest request carries the text it digests."""

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

from switchyard.audit import digest_check, proofs
from switchyard.audit.digests import TenantKeys
from switchyard.common import bus_guard, subjects
from switchyard.common.bus_auth import NatsCredentials
from switchyard.common.errors import SwitchyardError
from switchyard.common.ledger_rpc import (
    CheckpointRequest,
    ConsistencyRequest,
    DigestRequest,
    InclusionRequest,
)

log = logging.getLogger(__name__)


def error_reply(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


async def answer(
    raw: bytes, model: type[BaseModel], work: Callable[[Any], Awaitable[dict[str, Any]]]
) -> bytes:
    try:
        request = model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return error_reply("invalid_request", f"{where}: {first['msg']}")
    try:
        return orjson.dumps(await work(request))
    except SwitchyardError as exc:
        return error_reply(exc.code, exc.message)
    except Exception:
        log.exception("ledger request failed")
        return error_reply("internal_error", "the audit service could not answer; see its log")


def register(
    broker: NatsBroker,
    server: proofs.ProofServer,
    sessions: async_sessionmaker[AsyncSession],
    *,
    me: NatsCredentials | None = None,
) -> None:
    """Answers the ledger's RPCs, each only for an allowed caller (`bus_guard.rpc_reply_prefixes` for
    `me`, this service's NATS user)."""
    allowed = bus_guard.rpc_reply_prefixes(subjects.LEDGER_RPC_PREFIX, me)
    keys = TenantKeys(sessions)

    async def checkpoint(r: CheckpointRequest) -> dict[str, Any]:
        return await server.checkpoint(size=r.tree_size)

    async def inclusion(r: InclusionRequest) -> dict[str, Any]:
        return await server.inclusion(seq=r.seq, tree_size=r.tree_size, tenant_id=r.tenant_id)

    async def consistency(r: ConsistencyRequest) -> dict[str, Any]:
        return await server.consistency(first=r.first, second=r.second)

    async def digest(r: DigestRequest) -> dict[str, Any]:
        return await digest_check.check(sessions, keys, r)

    routes: list[tuple[str, type[BaseModel], Callable[[Any], Awaitable[dict[str, Any]]]]] = [
        (subjects.LEDGER_RPC_CHECKPOINT, CheckpointRequest, checkpoint),
        (subjects.LEDGER_RPC_INCLUSION, InclusionRequest, inclusion),
        (subjects.LEDGER_RPC_CONSISTENCY, ConsistencyRequest, consistency),
        (subjects.LEDGER_RPC_DIGEST, DigestRequest, digest),
    ]
    for subject, model, work in routes:
        _route(broker, subject, model, work, allowed)


def _route(
    broker: NatsBroker,
    subject: str,
    model: type[BaseModel],
    work: Callable[[Any], Awaitable[dict[str, Any]]],
    allowed: tuple[str, ...],
) -> None:
    @broker.subscriber(subject, queue=subjects.LEDGER_RPC_QUEUE, include_in_schema=False)
    async def handle(msg: NatsMessage) -> bytes:
        if bus_guard.refused_rpc(msg.raw_message, allowed, subscription=subject):
            raise SkipMessage  # no answer: its reply subject is no caller's
        return await answer(msg.raw_message.data, model, work)
