"""The outcome recorder: a durable consumer of `TaskClassified` that keeps the features of opted-in tenants.

Runs as its own process (`python -m switchyard.classifier.outcomes`) so the classifier's hot path is
unchanged; it embeds the same text the classifier did (the user turns) with the same model files.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import numpy as np

from switchyard.classifier import artifact, features, languages
from switchyard.classifier.classify import task_text
from switchyard.classifier.config import ClassifierSettings
from switchyard.classifier.outcomes import store
from switchyard.common import bus, db, subjects
from switchyard.common.embedding import model_files
from switchyard.common.embedding.embedder import Embedder
from switchyard.common.envelope import CloudEvent
from switchyard.common.events import AdminActionRecorded, TaskClassified
from switchyard.common.service import Service, create_service, run_service

log = logging.getLogger(__name__)
PURGE_EVERY = 500  # records between retention sweeps (and one at start)


def create(settings: ClassifierSettings) -> Service:
    consent = store.Consent(frozenset(settings.classifier_outcome_tenants))
    retention = timedelta(days=settings.classifier_outcome_retention_days)
    heads = artifact.load(settings.classifier_artifact_dir)  # the inputs (features, token cap) it expects
    files = model_files.ensure_built(settings.models_dir)[0]
    embedder = Embedder(
        files.path(settings.classifier_precision), files.tokenizer, threads=1, max_tokens=heads.prompt_tokens
    )
    model_sha = files.sha256(settings.classifier_precision)
    engine = db.create_engine(settings.db_url(), **settings.db_options())
    service = create_service("classifier-outcomes", settings)
    recorded = 0

    async def setup() -> None:
        await store.migrations().upgrade(settings.db_url(), pgbouncer=settings.database_pgbouncer)
        await store.purge(engine, retention=retention)

    async def teardown() -> None:
        await engine.dispose()

    service.setup.append(setup)
    service.teardown.append(teardown)

    async def on_classified(event: CloudEvent, payload: TaskClassified) -> None:
        nonlocal recorded
        task = payload.task
        if task.embedding() is not None or not consent.covers(task.tenant_id):
            return  # an embedding task was not classified: it has nothing to teach the heads
        text = task_text(task)
        emb = await asyncio.to_thread(embedder.embed, [text])
        vector = np.concatenate([emb.vectors[0], features.lexical(text)])
        await store.record(
            engine,
            tenant_id=task.tenant_id,
            task_id=task.task_id,
            vector=vector,
            embedding_model_sha256=model_sha,
            features_version=heads.input_version,
            other_language=languages.other_language(text) is not None,
        )
        recorded += 1
        if recorded % PURGE_EVERY == 0:
            await store.purge(engine, retention=retention)

    bus.subscribe(
        service.broker,
        consumer=subjects.CLASSIFIER_OUTCOMES_CONSUMER,
        service="classifier-outcomes",
        publisher=service.events,
        expected=[TaskClassified],
        handler=on_classified,
        outage=db.unreachable,  # a database outage: retried for a day, not dead-lettered
        description="Keeps the features (never text) of opted-in tenants' classified tasks for retraining.",
    )

    async def on_admin_action(event: CloudEvent, payload: AdminActionRecorded) -> None:
        if payload.action == "organization.erased":
            removed = await store.forget_tenant(engine, payload.tenant_id)
            log.info("organisation %s erased: %d stored feature rows deleted", payload.tenant_id, removed)

    bus.subscribe(
        service.broker,
        consumer=subjects.CLASSIFIER_OUTCOMES_ERASURE_CONSUMER,
        service="classifier-outcomes",
        publisher=service.events,
        expected=[AdminActionRecorded],
        handler=on_admin_action,
        outage=db.unreachable,  # a database outage: retried for a day, not dead-lettered
        description="Deletes an erased organisation's stored features (`organization.erased`).",
    )
    log.info("outcome recorder: tenants %s, retention %s", sorted(consent.tenants) or "none", retention)
    return service


def main() -> None:
    def build() -> tuple[Service, ClassifierSettings]:
        settings = ClassifierSettings()
        return create(settings), settings

    run_service(build, name="classifier-outcomes")
