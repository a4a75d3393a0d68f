"""The audit service: every event on the bus becomes one entry in the append-only ledger."""

from __future__ import annotations

from switchyard.audit.config import AuditSettings
from switchyard.audit.entries import draft_for
from switchyard.audit.writer import LedgerWriter
from switchyard.common import bus, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import CloudEvent
from switchyard.common.events.base import EventPayload
from switchyard.common.service import Service, create_service, run_service


def create(settings: AuditSettings) -> Service:
    service = create_service("audit", settings)
    engine = create_engine(settings.db_url())
    writer = LedgerWriter(sessionmaker(engine), max_batch=settings.audit_max_batch)

    async def start_writer() -> None:
        writer.start()

    async def on_event(event: CloudEvent, payload: EventPayload) -> None:
        await writer.append(draft_for(event, payload))  # acked (by the bus) only once committed

    service.setup.append(start_writer)
    service.teardown.extend([engine.dispose, writer.stop])  # run in reverse: writer first
    bus.subscribe(
        service.broker,
        consumer=subjects.AUDIT_CONSUMER,
        service="audit",
        publisher=service.events,
        expected=None,
        handler=on_event,
        max_workers=settings.audit_workers,
        description="Appends every event to the hash-linked, append-only audit ledger.",
    )
    return service


def main() -> None:
    def build() -> tuple[Service, AuditSettings]:
        settings = AuditSettings()
        return create(settings), settings

    run_service(build)
