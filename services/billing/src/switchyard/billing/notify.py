"""After an entry is stored: budget alerts for its account and period, published from their outbox rows;
and the webhook consumer's work, delivering each alert to the organisation's endpoints."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from nats.js.kv import KeyValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.billing import alerts
from switchyard.billing.aggregates import utc_day
from switchyard.billing.webhooks import Deliverer
from switchyard.common import kv_guard
from switchyard.common.budgets import limit_key, read_limit
from switchyard.common.bus import EventPublisher
from switchyard.common.envelope import CloudEvent
from switchyard.common.errors import TransientError
from switchyard.common.events import BudgetAlert

log = logging.getLogger(__name__)


LIMIT_CACHE_S = 5.0  # a changed budget is seen this much later at most


class Notifier:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.limits: KeyValue | None = None  # set once the bus is connected
        self._known: dict[str, tuple[float, int | None]] = {}

    async def _limit(self, tenant_id: str, user_id: str | None) -> int | None:
        if self.limits is None:
            return None
        key = limit_key(tenant_id, user_id)
        cached = self._known.get(key)
        if cached is not None and time.monotonic() - cached[0] < LIMIT_CACHE_S:
            return cached[1]
        try:
            value = await read_limit(self.limits, key)
        except kv_guard.ForgedEntry:  # not the gateway's: what was read before holds (none: no alert)
            value = cached[1] if cached is not None else None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[key] = (time.monotonic(), value)
        return value

    async def after_entry(
        self,
        publisher: EventPublisher,
        *,
        tenant_id: str,
        user_id: str | None,
        created_at: datetime,
        redelivered: bool = True,
    ) -> None:
        """Records the alerts this entry's spend earned and publishes them. A redelivery (the entry was
        stored before) also re-publishes any alert a crash left unpublished; otherwise only new ones are
        looked for, so an account without a budget costs no query at all."""
        new = await alerts.check(
            self._sessions, self._limit, tenant_id=tenant_id, user_id=user_id, day=utc_day(created_at)
        )
        if not new and not redelivered:
            return
        for row in await alerts.unpublished(self._sessions, tenant_id=tenant_id):
            await publisher.publish(
                alerts.alert_event(row), event_id=row.id, tenant_id=tenant_id, event_subject=row.account
            )
            await alerts.mark_published(self._sessions, alert_id=row.id)
            log.info(
                "budget alert: %s %s of %s at %d%% (period %s)",
                row.scope,
                row.account,
                tenant_id,
                row.threshold_pct,
                row.period,
            )


async def deliver_alert(deliverer: Deliverer, event: CloudEvent, payload: BudgetAlert) -> None:
    body = event.model_dump_json(exclude_none=True).encode()
    failures = await deliverer.deliver(tenant_id=payload.tenant_id, event_id=event.id, body=body)
    if failures:
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(failures.items()))
        raise TransientError(f"webhook delivery failed ({summary}); retrying with backoff")
