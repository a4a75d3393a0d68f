"""The router service: TaskClassified in, TaskRouted out (or TaskFailed when nothing can serve it)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from switchyard.common import bus, ids, subjects
from switchyard.common.config import CommonSettings
from switchyard.common.envelope import CloudEvent
from switchyard.common.errors import NoProviderAvailable
from switchyard.common.events import TaskClassified, TaskFailed, TaskRouted
from switchyard.common.policy import load_policy
from switchyard.common.providers import available, providers_bucket, read_all
from switchyard.common.service import Service, create_service, run_service
from switchyard.router.routing import UnknownModel, decide

log = logging.getLogger(__name__)


class RouterSettings(CommonSettings):
    providers_refresh_s: float = 2.0


class ProviderView:
    """The providers the executors announced, re-read from KV at most every `refresh_s` seconds."""

    def __init__(self, service: Service, refresh_s: float) -> None:
        self._service = service
        self._refresh_s = refresh_s
        self._at = 0.0
        self._names: set[str] = set()

    async def names(self) -> set[str]:
        now = time.monotonic()
        if now - self._at > self._refresh_s or not self._names:
            kv = await providers_bucket(bus.jetstream(self._service.broker))
            self._names = available(await read_all(kv))
            self._at = now
        return self._names


def create(settings: RouterSettings) -> Service:
    service = create_service("router", settings)
    policy = load_policy(settings.policy_path)
    providers = ProviderView(service, settings.providers_refresh_s)

    async def on_classified(event: CloudEvent, payload: TaskClassified) -> None:
        task = payload.task
        try:
            decision = decide(
                request=task.request,
                classification=payload.classification,
                policy=policy,
                available=await providers.names(),
            )
        except (UnknownModel, NoProviderAvailable) as exc:
            failed = TaskFailed(
                task_id=task.task_id,
                tenant_id=task.tenant_id,
                user_id=task.user_id,
                error_code=exc.code,
                error_message=exc.message,
                failed_at=datetime.now(UTC),
            )
            await service.events().publish(
                failed,
                subject=subjects.result_subject(task.task_id),
                event_id=ids.derived_id(event.id, "result"),
                tenant_id=task.tenant_id,
                event_subject=task.task_id,
                traceparent=event.traceparent,
            )
            return
        routed = TaskRouted(task=task, classification=payload.classification, decision=decision)
        await service.events().publish(
            routed,
            event_id=ids.derived_id(event.id, "routed"),
            tenant_id=task.tenant_id,
            event_subject=task.task_id,
            traceparent=event.traceparent,
        )

    bus.subscribe(
        service.broker,
        consumer=subjects.ROUTER_CONSUMER,
        service="router",
        publisher=service.events,
        expected=[TaskClassified],
        handler=on_classified,
        max_workers=8,
        description="Chooses a strategy and candidate chain for each classified task.",
    )
    return service


def main() -> None:
    def build() -> tuple[Service, RouterSettings]:
        settings = RouterSettings()
        return create(settings), settings

    run_service(build)
