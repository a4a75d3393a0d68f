"""The global emergency throttle (platform operator only): /v1/admin/throttle."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from switchyard.gateway.access import roles
from switchyard.gateway.access.actor import Actor
from switchyard.gateway.access.models import Throttle, ThrottleSet
from switchyard.gateway.auth import require
from switchyard.gateway.openapi import ERRORS
from switchyard.gateway.state import gateway_of

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERRORS)
Operator = Annotated[Actor, Depends(require(roles.ADMIN, platform=True))]


@router.get("/throttle", response_model=Throttle, summary="The global emergency throttle")
async def get_throttle(request: Request, actor: Operator) -> Throttle:
    limiter = gateway_of(request).limiter
    return Throttle(requests_per_min=limiter.control.throttle, global_limit=limiter.global_limit())


@router.put("/throttle", response_model=Throttle, summary="Set or lift the global emergency throttle")
async def set_throttle(body: ThrottleSet, request: Request, actor: Operator) -> Throttle:
    limiter = gateway_of(request).limiter
    await limiter.control.set_throttle(body.requests_per_min)
    await actor.record("throttle.set", "throttle", "global", body.model_dump(mode="json"))
    return Throttle(requests_per_min=limiter.control.throttle, global_limit=limiter.global_limit())
