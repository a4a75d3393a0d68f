"""The authenticated caller of an admin endpoint, and what every admin change does besides the change:
record an event for the audit ledger and, for credentials, tell every replica to drop its cache."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.common.bus import EventPublisher
from switchyard.common.events import AdminActionRecorded
from switchyard.common.events.admin import AdminActionName
from switchyard.gateway.access.changes import AuthChanges
from switchyard.gateway.tenants import Principal

TargetType = Literal["organization", "user", "key", "throttle", "webhook"]


@dataclass(frozen=True)
class Actor:
    principal: Principal
    sessions: async_sessionmaker[AsyncSession]
    changes: AuthChanges
    events: EventPublisher
    request_id: str

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id

    async def invalidate(self, kind: str, ident: str) -> None:
        await self.changes.announce(kind, ident)

    async def record(
        self,
        action: AdminActionName,
        target_type: TargetType,
        target_id: str,
        changes: dict[str, Any] | None = None,
        *,
        tenant_id: str | None = None,
    ) -> None:
        tenant = tenant_id or self.tenant_id
        event = AdminActionRecorded(
            action=action,
            tenant_id=tenant,
            actor_user_id=self.principal.user_id,
            actor_key_id=self.principal.api_key_id,
            target_type=target_type,
            target_id=target_id,
            changes=changes or {},
            request_id=self.request_id,
            at=datetime.now(UTC),
        )
        await self.events.publish(
            event,
            event_id=self.events.derived_id(self.request_id, action, tenant_id=tenant),
            tenant_id=tenant,
            event_subject=target_id,
        )
