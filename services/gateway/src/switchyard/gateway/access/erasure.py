"""Erasing an organisation's data: when a customer leaves or asks for it (GDPR Art. 17), the platform
operator erases what the gateway stores of its content, and nobody may act for it any more.

In order: its keys are revoked and its users disabled (nothing new is stored for it meanwhile; the view
announces it to every replica), then its stored responses and conversations, its batches' records, its
files (batch inputs and outputs and message batches' files among them) and its cached answers are purged.
Each step deletes only what is the organisation's by construction (a key under its hash, a record naming
it), so another organisation's data is never touched. A run again after an interruption erases what is
left and counts only that (idempotent). Work of the organisation under way meanwhile (a batch finishing,
an upload, a request storing its answer) removes what it writes once it finds the organisation marked
erased in the tenant registry (access/fence.py: marked before anything is deleted here).

Then the bus: its task API tasks (their answers) and their Idempotency-Key claims, its embedding
results' vectors in the object stores (named `<tenant>.<task id>`; a batch line's are kept three days),
and its task events (prompts, answers) in the events and dead-letter streams (access/bus_purge.py: those a
consumer has not read yet are left for a run again). Every replica drops its own semantic-cache vectors
when the tenant registry marks the organisation erased (cache/erasures.py).

Kept, and why: the audit ledger (append-only and tamper-evident; its events carry ids, hashes, counts and
metadata, never a prompt or an answer; its digests of prompts are keyed with the organisation's own key,
which the audit service deletes when it records the `organization.erased` event this erasure publishes)
and billing's usage records (accounting), and the organisation's row itself (the ledger and billing name
it); the bus's events without content (billing, admin actions, security events, provider calls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from switchyard.common import vectors
from switchyard.gateway.access import service
from switchyard.gateway.access.bus_purge import Purged, purge_events
from switchyard.gateway.access.models import Erased
from switchyard.gateway.batches.store import BatchStore
from switchyard.gateway.cache.backends import VectorIndex
from switchyard.gateway.cache.exact import ExactStore
from switchyard.gateway.errors import InvalidRequest
from switchyard.gateway.files.store import FileStore
from switchyard.gateway.stored_responses.erase import erase_organisation
from switchyard.gateway.stored_responses.store import ResponseStore
from switchyard.gateway.taskapi import store as taskapi_store
from switchyard.gateway.taskapi.store import tasks_bucket

log = logging.getLogger(__name__)


async def erase_organization(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant_id: str,
    responses: ResponseStore | None,
    files: FileStore,
    batches: BatchStore | None,
    cache: ExactStore | None,
    index: VectorIndex | None,
    closed: Callable[[], Awaitable[None]],
    js: JetStreamContext | None = None,
) -> Erased:
    """Erases the organisation's stored content (see the module); `closed` runs once its keys are revoked
    (to tell every replica). NotFound for no such organisation; the platform's own is refused."""
    org = await service.get_organization(sessions, tenant_id=tenant_id)
    if org.platform:
        raise InvalidRequest("the platform operator's organisation cannot be erased", param="org_id")
    keys, users = await service.close_organization(sessions, tenant_id=tenant_id)
    await closed()
    kv = await erase_organisation(responses, tenant_id) if responses is not None else None
    batch_count, unfinished = await batches.erase_tenant(tenant_id) if batches is not None else (0, 0)
    file_count, file_bytes = await files.erase_tenant(tenant_id)
    cache_keys, semantic = 0, False
    if cache is not None:
        cache_keys = await cache.forget_tenant(tenant_id)
    if index is not None:
        await asyncio.to_thread(index.forget_tenant, tenant_id)
        semantic = True
    task_states = await taskapi_store.erase_tenant(await tasks_bucket(js), tenant_id) if js is not None else 0
    vector_objects = await vectors.forget_tenant(js, tenant_id) if js is not None else 0
    purged = await purge_events(js, tenant_id) if js is not None else Purged()
    erased = Erased(
        organization_id=tenant_id,
        keys_revoked=keys,
        users_disabled=users,
        stored_responses=kv.responses if kv else 0,
        conversations=kv.conversations if kv else 0,
        stored_other_keys=kv.other_keys if kv else 0,
        files=file_count,
        file_bytes=file_bytes,
        batches=batch_count,
        unfinished_batches=unfinished,
        cache_keys=cache_keys,
        semantic_cache=semantic,
        tasks=task_states,
        batch_vectors=vector_objects,
        events_deleted=purged.deleted,
        events_left=purged.left,
        events_deadline_reached=not purged.complete,
    )
    log.info("erased organisation %s: %s", tenant_id, erased.model_dump(exclude={"organization_id"}))
    return erased
