"""The audit service: every event on the bus becomes one entry in the append-only ledger; the ledger's tree is
signed in checkpoints, and proofs are answered over request/reply."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext

from switchyard.audit import proofs, rpc
from switchyard.audit.checkpoints import Checkpointer
from switchyard.audit.config import AuditSettings
from switchyard.audit.digests import TenantKeys
from switchyard.audit.entries import draft_for, entry_tenant, needs_key
from switchyard.audit.writer import LedgerWriter
from switchyard.common import bus, db, results, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import CloudEvent
from switchyard.common.errors import ConfigurationError, InvalidEvent
from switchyard.common.events.admin import AdminActionRecorded
from switchyard.common.events.base import EventPayload
from switchyard.common.events.feedback import TaskFeedback
from switchyard.common.service import Service, create_service, run_service

log = logging.getLogger(__name__)
# the code of a dead-lettered rating of no finished task (as `POST /v1/feedback` answers 404)
FEEDBACK_UNKNOWN_TASK = "task_not_found"


def create(settings: AuditSettings) -> Service:
    service = create_service("audit", settings)
    signer = settings.signer(create=True)  # the embedded run makes var/ledger-signing.key on first start
    if signer is None:
        raise ConfigurationError(
            "the ledger needs a signing key: set SWITCHYARD_AUDIT_SIGNING_KEY or "
            "SWITCHYARD_AUDIT_SIGNING_KEY_FILE"
        )
    engine = create_engine(settings.db_url(), **settings.db_options())
    sessions = sessionmaker(engine)
    checkpointer = Checkpointer(
        sessions,
        signer=signer,
        every=settings.audit_checkpoint_every,
        interval_s=settings.audit_checkpoint_interval_s,
    )
    writer = LedgerWriter(
        sessions,
        # A batch is complete once it holds every event the consumer may have in hand (`audit_workers`):
        # no more can come until it is written. Lingering on for `audit_max_batch` capped the ledger at
        # ~audit_workers events per linger (~550 a second), below what the stack publishes under load.
        max_batch=min(settings.audit_max_batch, settings.audit_workers),
        linger_s=settings.audit_linger_ms / 1000.0,
        on_appended=checkpointer.appended,
    )

    async def start_writer() -> None:
        writer.start()
        checkpointer.start()

    keys = TenantKeys(sessions)

    async def on_event(event: CloudEvent, payload: EventPayload) -> None:
        if isinstance(payload, TaskFeedback):
            await rated_task_finished(bus.jetstream(service.broker), payload)
        key = await keys.for_digest(entry_tenant(event, payload)) if needs_key(payload) else None
        # acked (by the bus) only once committed; with the subject it was stored on (its provenance)
        await writer.append(draft_for(event, payload, key, subject=bus.delivered_subject()))
        if isinstance(payload, AdminActionRecorded) and payload.action == "organization.erased":
            # Crypto-shredding: the organisation's digests in the ledger become unconfirmable. After its
            # entry is committed; a failure naks the event, and its redelivery erases again (idempotent).
            deleted = await keys.erase(payload.tenant_id)
            gone = "deleted" if deleted else "already gone (or never made)"
            log.info("organisation %s erased: its ledger digest key %s", payload.tenant_id, gone)

    service.setup.append(start_writer)
    # Run in reverse: the writer stops first, then the checkpointer, then the engine.
    service.teardown.extend([engine.dispose, checkpointer.stop, writer.stop])
    bus.subscribe(
        service.broker,
        consumer=subjects.AUDIT_CONSUMER,
        service="audit",
        publisher=service.events,
        expected=None,
        handler=on_event,
        max_workers=settings.audit_workers,
        ack_wait_s=settings.audit_ack_wait_s,
        gather_s=settings.audit_linger_ms / 1000.0,  # one wake-up per burst of events (consumer.py)
        outage=db.unreachable,  # a database outage: retried for a day, not dead-lettered
        dead_letters=(FEEDBACK_UNKNOWN_TASK,),
        description="Appends every event to the hash-linked, append-only audit ledger.",
    )
    proof_server = proofs.ProofServer(settings.db_url(), engine)
    service.teardown.insert(0, _closer(proof_server))
    rpc.register(service.broker, proof_server, sessions, me=settings.nats_credentials())
    return service


async def rated_task_finished(js: JetStreamContext, feedback: TaskFeedback) -> None:
    """Feedback is kept only on a finished task of its organisation, as `POST /v1/feedback` checks before it
    publishes: a rating another system publishes on the bus for a task id its tenant has no result of (no
    such task, another organisation's, one not finished yet, or one older than the stream keeps results)
    is dead-lettered, never recorded; replayed once the task has finished (`switchyard dlq replay`), it is."""
    if await results.stored(js, feedback.tenant_id, feedback.task_id) is None:
        raise InvalidEvent(
            f"feedback on task '{feedback.task_id}', which has no result for organisation "
            f"'{feedback.tenant_id}': a task is rated once it has finished, within the 7 days its result is "
            "kept",
            code=FEEDBACK_UNKNOWN_TASK,
        )


def _closer(server: proofs.ProofServer) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        server.close()

    return close


def main() -> None:
    def build() -> tuple[Service, AuditSettings]:
        settings = AuditSettings()
        return create(settings), settings

    run_service(build, name="audit")
