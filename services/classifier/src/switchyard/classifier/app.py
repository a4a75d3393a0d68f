"""The classifier service: TaskSubmitted in, TaskClassified out (type, complexity, urgency)."""

from __future__ import annotations

import logging
import time

from switchyard.classifier import metrics, reuse
from switchyard.classifier.batcher import MicroBatcher
from switchyard.classifier.classify import (
    Classifier,
    Prediction,
    classification,
    passthrough,
    task_text,
)
from switchyard.classifier.config import ClassifierSettings
from switchyard.classifier.follower import HeadsFollower
from switchyard.common import bus, invalid, subjects, tenants, tracing
from switchyard.common.config import replica_name
from switchyard.common.envelope import CloudEvent
from switchyard.common.errors import InvalidEvent, TenantMismatch
from switchyard.common.events import Classification, TaskClassified, TaskSubmitted
from switchyard.common.service import Service, create_service, run_service

log = logging.getLogger(__name__)


def create(settings: ClassifierSettings, classifier: Classifier | None = None) -> Service:
    """Builds the service; loading the classifier raises ConfigurationError on a missing/corrupt artifact."""
    classifier = classifier or Classifier.load(
        models_dir=settings.models_dir,
        artifact_dir=settings.classifier_artifact_dir,
        precision=settings.classifier_precision,
        threads=settings.classifier_threads,
        build=settings.classifier_build_models,
        max_tokens=settings.classifier_max_tokens,
    )
    service = create_service("classifier", settings)
    batcher: MicroBatcher[str, Prediction] = MicroBatcher(
        classifier.predict,
        max_batch=settings.classifier_max_batch,
        max_wait_s=settings.classifier_max_wait_ms / 1000.0,
    )
    predictions = reuse.Predictions(settings.classifier_reuse_size)
    registry: list[tenants.TenantCheck] = []

    async def follow_registry() -> None:
        js = bus.jetstream(service.broker)
        bucket = await tenants.registry_bucket(js)
        registry.append(tenants.TenantCheck(lambda: bucket, mode=settings.tenant_check))
        await registry[0].start()

    async def stop_registry() -> None:
        for check in registry:
            await check.stop()

    service.setup.extend([batcher.start, follow_registry])
    service.teardown.extend([batcher.stop, stop_registry])
    if settings.classifier_follow_promotions:
        follower = HeadsFollower(
            classifier,
            instance=replica_name("classifier", settings.instance),
            poll_s=settings.classifier_promotion_poll_s,
            replicas=settings.stream_replicas,
        )

        async def follow() -> None:  # before the consumer starts: the first task gets the promoted heads
            await follower.start(bus.jetstream(service.broker))

        service.setup.append(follow)
        service.drain.append(follower.stop)

    async def publish(event: CloudEvent, task: TaskSubmitted, result: Classification) -> None:
        await service.events().publish(
            TaskClassified(task=task, classification=result),
            event_id=service.events().derived_id(event.id, "classified", tenant_id=task.tenant_id),
            tenant_id=task.tenant_id,
            event_subject=task.task_id,
        )

    async def on_submitted(event: CloudEvent, task: TaskSubmitted) -> None:
        started = time.perf_counter()
        # a tenant that is no organisation: refused here, before anything is routed, run or billed
        await tenants.refuse(
            registry[0],
            service.events(),
            task,
            answer_id=service.events().derived_id(event.id, "unknown-tenant", tenant_id=task.tenant_id),
        )
        if task.embedding() is not None:  # nothing to classify: neither the reuse cache nor the encoder
            result = passthrough(task, latency_ms=(time.perf_counter() - started) * 1000.0)
            metrics.PREDICTIONS.labels(result.model_version).inc()
            tracing.annotate(
                task_id=task.task_id, task_type=result.type, classifier_model=result.model_version
            )
            await publish(event, task, result)
            return
        text = task_text(task)
        key = predictions.key(task.tenant_id, text)
        prediction = predictions.get(key) if key is not None else None
        if prediction is not None and prediction.model_version != classifier.model_version:
            prediction = None  # made by heads swapped out since: these heads classify it again
        reused = prediction is not None
        if prediction is None:
            prediction = await batcher.submit(text)
            if key is not None:
                predictions.put(key, prediction)
            metrics.PREDICTIONS.labels("encoder").inc()
        else:
            metrics.PREDICTIONS.labels("reused").inc()
        result = classification(
            task,
            prediction,
            model_version=prediction.model_version,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )
        tracing.annotate(
            task_id=task.task_id,
            task_type=result.type,
            confidence=round(result.confidence, 4),
            complexity=round(result.complexity, 4),
            classifier_model=result.model_version,
            reused=reused,
        )
        await publish(event, task, result)

    async def on_invalid(raw: bytes, exc: InvalidEvent, subject: str) -> None:
        # one on a tenant's scoped subject is told to that tenant (its sender), whatever tenant it names,
        # or to nobody
        token = exc.token if isinstance(exc, TenantMismatch) else subjects.scoped_token(subject)
        sender = None
        if token is not None:
            named = tenants.named_in(raw)  # its own tenant's: known without the registry
            if named is not None and subjects.tenant_token(named) == token:
                sender = named
            elif registry:
                sender = registry[0].owner_of(token)
            if sender is None:
                log.warning("an invalid scoped submission not answered: no organisation has its token")
                return
        await invalid.tell_submitter(service.events(), raw, exc.message, code=exc.code, sender=sender)

    for consumer, whose in (
        (subjects.CLASSIFIER_CONSUMER, "each submitted task"),
        (subjects.CLASSIFIER_SCOPED_CONSUMER, "each task a tenant-scoped system submitted"),
    ):
        bus.subscribe(
            service.broker,
            consumer=consumer,
            service="classifier",
            publisher=service.events,
            expected=[TaskSubmitted],
            handler=on_submitted,
            max_workers=settings.classifier_workers,
            description=f"Classifies {whose}: type, complexity and urgency.",
            on_invalid=on_invalid,
            dead_letters=[tenants.UnknownTenant.code],
        )
    metrics.at_start()
    log.info("classifier model %s", classifier.model_version)
    return service


def main() -> None:
    def build() -> tuple[Service, ClassifierSettings]:
        settings = ClassifierSettings()
        return create(settings), settings

    run_service(build, name="classifier")
