"""What the views need, built once by `create_app` and reached through the request's app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchyard.common.bus import EventPublisher
from switchyard.gateway.access.changes import AuthChanges
from switchyard.gateway.access.late_events import LateEvents
from switchyard.gateway.access.lockout import Lockout
from switchyard.gateway.access.oidc import OidcVerifier
from switchyard.gateway.access.registry import Registry
from switchyard.gateway.admission import Admission
from switchyard.gateway.budgets.service import Budgets
from switchyard.gateway.cache.service import ResponseCache
from switchyard.gateway.catalog import Catalog
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.embeddings import EmbeddingResults
from switchyard.gateway.files.store import FileStore
from switchyard.gateway.guardrails.service import Guardrails
from switchyard.gateway.inflight import InFlight, Orphans
from switchyard.gateway.intake import Intake
from switchyard.gateway.limits.service import RateLimiter
from switchyard.gateway.sockets import Sockets
from switchyard.gateway.stopping import Stop
from switchyard.gateway.stored_responses.store import ResponseStore
from switchyard.gateway.taskapi.idempotency import BodyKey
from switchyard.gateway.taskapi.service import TaskRuns
from switchyard.gateway.tasks import TaskClient
from switchyard.gateway.tenants import KeyVerifier

if TYPE_CHECKING:  # the batches' runner reaches the gateway through this module
    from switchyard.gateway.batches.service import Batches


@dataclass
class Gateway:
    settings: GatewaySettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    verifier: KeyVerifier
    registry: Registry  # the tenant registry the pipeline reads (access/registry.py)
    changes: AuthChanges
    events: EventPublisher
    nc: Client
    tasks: TaskClient
    catalog: Catalog
    limiter: RateLimiter
    budgets: Budgets
    admission: Admission
    runs: TaskRuns
    inflight: InFlight
    orphans: Orphans
    stop: Stop
    embedding_results: EmbeddingResults
    files: FileStore
    intake: Intake  # the bytes of request bodies taken in at once (SWITCHYARD_MAX_BODY_BYTES_READING)
    body_key: BodyKey  # seals the Idempotency-Key body digests kept in the bus (taskapi/body_key.py)
    guardrails: Guardrails | None = None
    cache: ResponseCache | None = None
    sso: OidcVerifier | None = None
    lockout: Lockout | None = None
    batches: Batches | None = None
    responses: ResponseStore | None = None  # stored responses (None: the deployment stores none)
    # the deployment stores none, but an earlier configuration did: DELETE /v1/responses/{id} reaches them
    responses_left: ResponseStore | None = None
    sockets: Sockets = field(default_factory=Sockets)  # Responses WebSocket connections open, per key
    late_events: LateEvents | None = None  # erased organisations' events published after their erasure


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]
