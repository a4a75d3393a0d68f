"""Organisations' webhook endpoints and signed deliveries of budget alerts.

Every request is signed with the endpoint's secret (shown once when the endpoint is created, stored
encrypted with Fernet under a key from the settings, never logged):

    Switchyard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
    Switchyard-Webhook-Id: <event id>          (the same on every retry: de-duplicate on it)

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in constant time and
refuses old timestamps (`verify_signature` below does exactly that). A delivery is done at the first 2xx;
until then the alert is redelivered by the bus with backoff, skipping the endpoints already served.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Result, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing.models import WebhookDelivery, WebhookEndpoint
from switchyard.common import ids
from switchyard.common.billing_rpc import CreatedWebhook, Webhook
from switchyard.common.errors import ConfigurationError, SwitchyardError

SIGNATURE_HEADER = "Switchyard-Signature"
ID_HEADER = "Switchyard-Webhook-Id"
TOLERANCE_S = 300
Sessions = async_sessionmaker[AsyncSession]


class NotFound(LookupError):
    pass


class RefusedUrl(SwitchyardError):
    code = "invalid_request"


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuses what is not http(s) and, unless allowed (the embedded run), hosts that resolve to a
    loopback, private, link-local or otherwise non-public address: an organisation's admin must not be
    able to make billing call into the platform's own network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedUrl("url: an http:// or https:// URL with a host is needed")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
    except OSError as exc:
        raise RefusedUrl(f"url: {parts.hostname} does not resolve") from exc
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_global:
            raise RefusedUrl(f"url: {parts.hostname} is not a public address")


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, body: bytes, header: str, *, now: float | None = None, tolerance_s: int = TOLERANCE_S
) -> bool:
    """What a receiver runs: the header's HMAC matches the body and its timestamp is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp=timestamp).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class SecretBox:
    """Encrypts endpoint secrets at rest (Fernet: AES-128-CBC with HMAC-SHA256)."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise ConfigurationError(
                "SWITCHYARD_BILLING_WEBHOOK_KEY must be a Fernet key (32 url-safe base64-encoded bytes)"
            ) from exc

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ConfigurationError("a webhook secret does not decrypt with the configured key") from exc

    def __repr__(self) -> str:
        return "SecretBox(<redacted>)"


def _out(row: WebhookEndpoint) -> Webhook:
    return Webhook(
        id=row.id,
        url=row.url,
        description=row.description,
        secret_hint=row.secret_hint,
        active=row.active,
        created_at=row.created_at,
    )


async def create_endpoint(
    sessions: Sessions,
    box: SecretBox,
    *,
    tenant_id: str,
    url: str,
    description: str,
    allow_private: bool = True,
) -> CreatedWebhook:
    await check_url(url, allow_private=allow_private)
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    row = WebhookEndpoint(
        id=f"wh_{ids.new_id()[:20]}",
        tenant_id=tenant_id,
        url=url,
        description=description,
        secret_encrypted=box.seal(secret),
        secret_hint=secret[-4:],
        active=True,
        created_at=datetime.now(UTC),
    )
    async with sessions() as session, session.begin():
        session.add(row)
    return CreatedWebhook(**_out(row).model_dump(), secret=secret)


async def list_endpoints(
    sessions: Sessions, *, tenant_id: str, active_only: bool = True
) -> list[WebhookEndpoint]:
    async with sessions() as session:
        stmt = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
        if active_only:
            stmt = stmt.where(WebhookEndpoint.active.is_(True))
        return list((await session.execute(stmt.order_by(WebhookEndpoint.created_at))).scalars())


async def webhooks(sessions: Sessions, *, tenant_id: str) -> list[Webhook]:
    return [_out(r) for r in await list_endpoints(sessions, tenant_id=tenant_id)]


async def delete_endpoint(sessions: Sessions, *, tenant_id: str, endpoint_id: str) -> Webhook:
    """Deactivates it (kept for the record of deliveries); another organisation's id is not found."""
    async with sessions() as session, session.begin():
        row = (
            await session.execute(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.id == endpoint_id,
                    WebhookEndpoint.tenant_id == tenant_id,
                    WebhookEndpoint.active.is_(True),
                )
            )
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id!r}")
        row.active = False
    return _out(row)


async def forget_tenant(sessions: Sessions, *, tenant_id: str) -> tuple[int, int]:
    """An erased organisation's endpoints (their URLs may name it, their secrets are its own) and
    deliveries, deleted: (endpoints, deliveries). Nothing is sent to it afterwards (`Deliverer` finds no
    endpoint, and records no delivery to one deleted while it posted). Run again, it deletes nothing."""
    async with sessions() as session, session.begin():
        deliveries = await session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
        )
        endpoints = await session.execute(
            delete(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
        )
    return _count(endpoints), _count(deliveries)


def _count(result: Result[Any]) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class Deliverer:
    """Posts one event to every active endpoint of its organisation not yet served. Returns the failures
    (endpoint id -> reason) so the caller can have the event redelivered later."""

    def __init__(
        self, sessions: Sessions, box: SecretBox, client: httpx.AsyncClient, *, allow_private: bool = True
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._client = client
        self._allow_private = allow_private
        self._tries: dict[tuple[str, str], int] = {}

    async def deliver(self, *, tenant_id: str, event_id: str, body: bytes) -> Mapping[str, str]:
        endpoints = await list_endpoints(self._sessions, tenant_id=tenant_id)
        done = await self._delivered(event_id)
        failures: dict[str, str] = {}
        for endpoint in endpoints:
            if endpoint.id in done:
                continue
            tries = self._tries[(endpoint.id, event_id)] = self._tries.get((endpoint.id, event_id), 0) + 1
            headers = {
                "content-type": "application/cloudevents+json",
                ID_HEADER: event_id,
                SIGNATURE_HEADER: sign(
                    self._box.open(endpoint.secret_encrypted), body, timestamp=int(time.time())
                ),
                "user-agent": "Switchyard-Webhooks/1",
            }
            try:
                await check_url(endpoint.url, allow_private=self._allow_private)  # it may resolve anew
                reply = await self._client.post(endpoint.url, content=body, headers=headers)
            except RefusedUrl:
                failures[endpoint.id] = "refused address"
                continue
            except httpx.HTTPError as exc:
                failures[endpoint.id] = f"{type(exc).__name__}"
                continue
            if not 200 <= reply.status_code < 300:
                failures[endpoint.id] = f"HTTP {reply.status_code}"
                continue
            await self._record(endpoint, event_id, reply.status_code, tries)
            self._tries.pop((endpoint.id, event_id), None)
        return failures

    async def _delivered(self, event_id: str) -> set[str]:
        async with self._sessions() as session:
            stmt = select(WebhookDelivery.endpoint_id).where(WebhookDelivery.event_id == event_id)
            return set((await session.execute(stmt)).scalars())

    async def _record(self, endpoint: WebhookEndpoint, event_id: str, status: int, tries: int) -> None:
        """The delivery, unless its endpoint was deleted meanwhile (its organisation erased while this
        posted): a record of it would outlive the erasure."""
        try:
            async with self._sessions() as session, session.begin():
                if await session.get(WebhookEndpoint, endpoint.id) is None:
                    return
                session.add(
                    WebhookDelivery(
                        endpoint_id=endpoint.id,
                        event_id=event_id,
                        tenant_id=endpoint.tenant_id,
                        status=status,
                        attempts=tries,
                        delivered_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            pass  # another replica recorded the same delivery: the receiver de-duplicates on the id


KEY_FILE = "billing-webhook.key"


def secret_box(key: str | None, *, var_dir: Path, create: bool = True) -> SecretBox:
    """The configured key, else the embedded run's key file (with `create`, made on first use, readable by
    us only). Replicas on other machines must share one key: set SWITCHYARD_BILLING_WEBHOOK_KEY."""
    if key:
        return SecretBox(key.encode())
    path = var_dir / KEY_FILE
    if not path.exists():
        if not create:
            raise ConfigurationError(
                "SWITCHYARD_BILLING_WEBHOOK_KEY is not set: billing replicas need one shared Fernet key to "
                "encrypt webhook secrets (generate one with cryptography.fernet.Fernet.generate_key())"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another replica made it first
            return SecretBox(path.read_bytes().strip())
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
    return SecretBox(path.read_bytes().strip())
