"""The billing service: task results in; a priced usage entry stored and a UsageRecorded event out."""

from __future__ import annotations

import logging

from switchyard.billing.calls import call_usage_event, is_billable, record_call_usage
from switchyard.billing.service import record_usage, usage_event
from switchyard.common import bus, subjects
from switchyard.common.config import CommonSettings
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import ProviderCallRecorded, TaskCompleted, TaskFailed
from switchyard.common.policy import load_policy
from switchyard.common.service import Service, create_service, run_service

log = logging.getLogger(__name__)


class BillingSettings(CommonSettings):
    billing_workers: int = 8


def create(settings: BillingSettings) -> Service:
    service = create_service("billing", settings)
    policy = load_policy(settings.policy_path)
    engine = create_engine(settings.db_url())
    sessions = sessionmaker(engine)

    async def on_result(event: CloudEvent, payload: TaskCompleted | TaskFailed) -> None:
        if isinstance(payload, TaskFailed):
            return  # nothing was delivered, nothing is charged
        recorded = await record_usage(sessions, event_id=event.id, completed=payload, policy=policy)
        entry = recorded.entry
        # Published after the commit, every time: a redelivery re-publishes the same event id (the entry's
        # id), which JetStream's duplicate window and every consumer drop.
        await service.events().publish(
            usage_event(entry),
            event_id=entry.id,
            tenant_id=entry.tenant_id,
            event_subject=entry.task_id,
            traceparent=event.traceparent,
        )

    async def on_call(event: CloudEvent, payload: ProviderCallRecorded) -> None:
        if not is_billable(payload):
            return  # the delivered answer is charged from the task's result
        recorded = await record_call_usage(sessions, event_id=event.id, call=payload, policy=policy)
        entry = recorded.entry
        await service.events().publish(
            call_usage_event(entry),
            event_id=entry.id,
            tenant_id=entry.tenant_id,
            event_subject=entry.task_id,
            traceparent=event.traceparent,
        )

    service.teardown.append(engine.dispose)
    bus.subscribe(
        service.broker,
        consumer=subjects.BILLING_CONSUMER,
        service="billing",
        publisher=service.events,
        expected=[TaskCompleted, TaskFailed],
        handler=on_result,
        max_workers=settings.billing_workers,
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
        description="Charges provider calls whose tokens were spent on answers not delivered.",
    )
    return service


def main() -> None:
    def build() -> tuple[Service, BillingSettings]:
        settings = BillingSettings()
        return create(settings), settings

    run_service(build)
