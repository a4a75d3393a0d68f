"""Budget-alert webhook endpoints of the organisation: /v1/admin/webhooks. Kept by the billing service
(which signs and sends the alerts) and managed here over NATS request/reply; the signing secret is in the
creation's answer only."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from switchyard.common import subjects
from switchyard.common.billing_rpc import (
    CreatedWebhook,
    Webhook,
    WebhookCreate,
    WebhookList,
    WebhookRef,
    Webhooks,
    WebhookUrl,
)
from switchyard.gateway.access import roles
from switchyard.gateway.access.actor import Actor
from switchyard.gateway.auth import require
from switchyard.gateway.openapi import ERRORS
from switchyard.gateway.views.usage import ask_billing

router = APIRouter(prefix="/v1/admin/webhooks", tags=["admin"], responses=ERRORS)
Reader = Annotated[Actor, Depends(require(roles.ADMIN, roles.BILLING_READ))]
Admin = Annotated[Actor, Depends(require(roles.ADMIN))]


class WebhookIn(BaseModel):
    url: WebhookUrl = Field(description="http(s) URL for signed budget alerts")
    description: str = Field(default="", max_length=200)


def _redacted(url: str) -> str:
    """The URL for the audit trail without what may be a credential (user info, query string)."""
    parts = urlsplit(url)
    host = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@router.get("", response_model=Webhooks, summary="The organisation's webhook endpoints (never the secrets)")
async def list_webhooks(request: Request, actor: Reader) -> Response:
    body = await ask_billing(
        request, subjects.BILLING_RPC_WEBHOOK_LIST, WebhookList(tenant_id=actor.tenant_id)
    )
    return Response(body, media_type="application/json")


@router.post(
    "", response_model=CreatedWebhook, status_code=201, summary="Add an endpoint (secret shown once)"
)
async def create_webhook(body: WebhookIn, request: Request, actor: Admin) -> Response:
    ask = WebhookCreate.model_validate({"tenant_id": actor.tenant_id, **body.model_dump()})
    reply = await ask_billing(request, subjects.BILLING_RPC_WEBHOOK_CREATE, ask)
    created = CreatedWebhook.model_validate_json(reply)
    await actor.record("webhook.created", "webhook", created.id, {"url": _redacted(created.url)})
    return Response(reply, status_code=201, media_type="application/json")


@router.delete("/{webhook_id}", response_model=Webhook, summary="Remove an endpoint")
async def delete_webhook(webhook_id: str, request: Request, actor: Admin) -> Response:
    ask = WebhookRef(tenant_id=actor.tenant_id, id=webhook_id)
    reply = await ask_billing(request, subjects.BILLING_RPC_WEBHOOK_DELETE, ask)
    await actor.record("webhook.deleted", "webhook", webhook_id)
    return Response(reply, media_type="application/json")
