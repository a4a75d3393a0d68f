"""The billing service: task results in; a priced usage entry stored and a UsageRecorded event out; budget
alerts and their webhooks; usage, statements and analytics answered over request/reply (rpc.py)."""

from __future__ import annotations

import logging

import httpx
from pydantic import Field, SecretStr

from switchyard.billing import rpc
from switchyard.billing.calls import call_usage_event, is_billable, record_call_usage
from switchyard.billing.notify import Notifier, deliver_alert
from switchyard.billing.service import usage_event
from switchyard.billing.webhooks import Deliverer, SecretBox, forget_tenant, secret_box
from switchyard.billing.writer import UsageWriter
from switchyard.common import bus, db, metrics, subjects
from switchyard.common.budgets import limits_bucket
from switchyard.common.config import CommonSettings
from switchyard.common.db import create_engine, is_sqlite, sessionmaker
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import (
    AdminActionRecorded,
    BudgetAlert,
    ProviderCallRecorded,
    TaskCompleted,
    TaskFailed,
)
from switchyard.common.policy_source import PolicySource
from switchyard.common.service import Service, create_service, run_service

log = logging.getLogger(__name__)


class BillingSettings(CommonSettings):
    billing_workers: int = Field(
        default=32,
        ge=1,
        description="results handled concurrently; a batch holding this many is stored without lingering",
    )
    billing_max_batch: int = Field(
        default=200,
        ge=1,
        description="most usage entries stored in one transaction (at most billing_workers)",
    )
    billing_linger_ms: float = Field(
        default=100.0,
        ge=0,
        description="results and calls are taken from the bus in bursts this far apart, and a batch of "
        "usage entries waits this long for more before it is stored",
    )
    billing_webhook_key: SecretStr | None = Field(
        default=None,
        description="Fernet key encrypting webhook secrets at rest; default: <var_dir>/billing-webhook.key",
    )
    billing_webhook_timeout_s: float = Field(default=10.0, gt=0, description="per webhook request")
    billing_webhook_allow_private: bool | None = Field(
        default=None,
        description="webhooks may reach loopback/private addresses; default: only in the SQLite run",
    )


def create(settings: BillingSettings) -> Service:
    service = create_service("billing", settings)
    # Re-read when its file changes, as the router's and the gateway's: each charge is priced by the
    # policy in force when it is made, and its entry records that policy's version.
    policies = PolicySource(
        settings.policy_path, check_s=settings.policy_check_s, settle_s=settings.policy_settle_s
    )
    metrics.expect_usage((model.tier, model.provider, model.id) for model in policies.current().models)
    engine = create_engine(settings.db_url(), **settings.db_options())
    sessions = sessionmaker(engine)
    notifier = Notifier(sessions)
    writer = UsageWriter(
        sessions,
        policy=policies,
        # Complete once it holds every result the consumer may have in hand (see audit's writer).
        max_batch=min(settings.billing_max_batch, settings.billing_workers),
        linger_s=settings.billing_linger_ms / 1000,
    )
    embedded = is_sqlite(settings.db_url())
    if not embedded and settings.billing_webhook_key is None:
        log.warning(
            "SWITCHYARD_BILLING_WEBHOOK_KEY is not set: budget-alert webhooks cannot be managed or sent"
        )
    allow_private = (
        embedded if settings.billing_webhook_allow_private is None else settings.billing_webhook_allow_private
    )
    boxes: list[SecretBox] = []
    client = httpx.AsyncClient(timeout=settings.billing_webhook_timeout_s, follow_redirects=False)

    def box() -> SecretBox:  # made on first use, so a key problem shows on the request that needs it
        if not boxes:
            key = settings.billing_webhook_key
            secret = key.get_secret_value() if key else None
            # The embedded run (SQLite, one machine) makes its key file; elsewhere replicas must share a key.
            boxes.append(secret_box(secret, var_dir=settings.resolved_var_dir(), create=embedded))
        return boxes[0]

    async def connect_limits() -> None:
        notifier.limits = await limits_bucket(bus.jetstream(service.broker))
        writer.start()

    async def on_result(event: CloudEvent, payload: TaskCompleted | TaskFailed) -> None:
        if isinstance(payload, TaskFailed):
            return  # nothing was delivered, nothing is charged
        entry_id = service.events().derived_id(event.id, "usage", tenant_id=payload.tenant_id)
        recorded = await writer.record(event_id=event.id, completed=payload, entry_id=entry_id)  # committed
        entry = recorded.entry
        # Published after the commit, every time: a redelivery re-publishes the same event id (the entry's
        # id), which JetStream's duplicate window and every consumer drop.
        await service.events().publish(
            usage_event(entry),
            event_id=entry.id,
            tenant_id=entry.tenant_id,
            event_subject=entry.task_id,
        )
        await notifier.after_entry(
            service.events(),
            tenant_id=entry.tenant_id,
            user_id=entry.user_id,
            created_at=entry.created_at,
            redelivered=not recorded.created,
        )

    async def on_call(event: CloudEvent, payload: ProviderCallRecorded) -> None:
        if not is_billable(payload):
            return  # the delivered answer is charged from the task's result
        recorded = await record_call_usage(
            sessions,
            event_id=event.id,
            call=payload,
            policy=policies.current(),
            entry_id=service.events().derived_id(event.id, "usage", tenant_id=payload.tenant_id),
        )
        entry = recorded.entry
        await service.events().publish(
            call_usage_event(entry),
            event_id=entry.id,
            tenant_id=entry.tenant_id,
            event_subject=entry.task_id,
        )
        await notifier.after_entry(
            service.events(),
            tenant_id=entry.tenant_id,
            user_id=entry.user_id,
            created_at=entry.created_at,
            redelivered=not recorded.created,
        )

    deliverers: list[Deliverer] = []

    async def on_alert(event: CloudEvent, payload: BudgetAlert) -> None:
        if not deliverers:
            deliverers.append(Deliverer(sessions, box(), client, allow_private=allow_private))
        await deliver_alert(deliverers[0], event, payload)

    async def on_admin_action(event: CloudEvent, payload: AdminActionRecorded) -> None:
        if payload.action == "organization.erased":
            endpoints, deliveries = await forget_tenant(sessions, tenant_id=payload.tenant_id)
            log.info(
                "organisation %s erased: %d webhook endpoints and %d deliveries deleted",
                payload.tenant_id,
                endpoints,
                deliveries,
            )

    service.setup.extend([policies.start, connect_limits])
    service.teardown.append(engine.dispose)
    service.teardown.append(writer.stop)  # teardown runs in reverse: the writer stops before the engine
    service.teardown.append(client.aclose)
    service.teardown.append(policies.stop)
    rpc.register(
        service.broker,
        sessions,
        policy=policies,
        box=box,
        allow_private=allow_private,
        me=settings.nats_credentials(),
    )
    bus.subscribe(
        service.broker,
        consumer=subjects.BILLING_CONSUMER,
        service="billing",
        publisher=service.events,
        expected=[TaskCompleted, TaskFailed],
        handler=on_result,
        max_workers=settings.billing_workers,
        gather_s=settings.billing_linger_ms / 1000,  # one wake-up per burst of events (consumer.py)
        outage=db.unreachable,  # a database outage: retried for a day, not dead-lettered
        description="Prices each completed task into a usage entry and announces it.",
    )
    bus.subscribe(
        service.broker,
        consumer=subjects.BILLING_CALLS_CONSUMER,
        service="billing",
        publisher=service.events,
        expected=[ProviderCallRecorded],
        handler=on_call,
        max_workers=settings.billing_workers,
        gather_s=settings.billing_linger_ms / 1000,
        outage=db.unreachable,  # a database outage: retried for a day, not dead-lettered
        description="Charges provider calls whose tokens were spent on answers not delivered.",
    )
    bus.subscribe(
        service.broker,
        consumer=subjects.BILLING_WEBHOOKS_CONSUMER,
        service="billing",
        publisher=service.events,
        expected=[BudgetAlert],
        handler=on_alert,
        max_workers=4,
        outage=db.unreachable,  # a database outage: retried for a day, not dead-lettered
        description="Delivers budget alerts to the organisation's signed webhook endpoints, with retries.",
    )
    bus.subscribe(
        service.broker,
        consumer=subjects.BILLING_ERASURE_CONSUMER,
        service="billing",
        publisher=service.events,
        expected=[AdminActionRecorded],
        handler=on_admin_action,
        outage=db.unreachable,  # a database outage: retried for a day, not dead-lettered
        description="Deletes an erased organisation's webhooks and their deliveries (`organization.erased`).",
    )
    return service


def main() -> None:
    def build() -> tuple[Service, BillingSettings]:
        settings = BillingSettings()
        return create(settings), settings

    run_service(build, name="billing")
