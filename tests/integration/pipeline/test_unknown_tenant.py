"""Tasks of a tenant that is no organisation, on a real nats-server through the real pipeline (classifier,
router, executor, billing as processes): refused before anything is routed, sent to a provider or billed,
dead-lettered with the reason, and answered at once (`task.failed`, `unknown_tenant`), so the submitter
does not wait out its timeout. An erased organisation's tasks are refused too; a tenant registered a
moment before its task runs; a registry nobody keeps lets every tenant through (the pipeline alone)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats
import orjson
import pytest
import yaml
from nats.js import api
from nats.js.kv import KeyValue
from sqlalchemy import select

from switchyard.billing.db import migrations as billing_migrations
from switchyard.billing.models import UsageEntry
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, subjects, tenants
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.envelope import decode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    TaskClassified,
    TaskCompleted,
    TaskFailed,
    TaskSubmitted,
)
from tests.integration.pipeline.services import Fleet
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration

POLICY = {
    "version": "tenants",
    "models": [
        {
            "id": "cheap/mini",
            "provider": "cheap",
            "upstream": "gpt-mini",
            "tier": "fast",
            "input_per_1k": 0.001,
            "output_per_1k": 0.002,
            "context_window": 8000,
        }
    ],
}


@dataclass
class Stack:
    nats_url: str
    fake: FakeOpenAI
    db_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("tenants")
    server = NatsServer(tmp / "jetstream").start()
    db_url = f"sqlite+aiosqlite:///{tmp / 'switchyard.db'}"
    asyncio.run(billing_migrations().upgrade(db_url))
    policy = tmp / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    fake = FakeOpenAI()
    try:
        with BackgroundServer(fake.app) as upstream:
            extra = {"cheap": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": fake.api_key}}
            fleet = Fleet(
                tmp,
                {
                    "SWITCHYARD_NATS_URL": server.url,
                    "SWITCHYARD_DATABASE_URL": db_url,
                    "SWITCHYARD_POLICY_PATH": str(policy),
                    "OPENAI_API_KEY": "",
                    "ANTHROPIC_API_KEY": "",
                },
            )
            env = {"SWITCHYARD_LOCAL_ENABLED": "false", "SWITCHYARD_EXTRA_PROVIDERS": json.dumps(extra)}
            try:
                fleet.start("switchyard.billing", name="billing")
                fleet.start("switchyard.router", name="router")
                fleet.start("switchyard.executor", name="executor", env=env)
                fleet.start("switchyard.classifier", name="classifier")
                fleet.wait_ready(timeout=180)
                yield Stack(server.url, fake, db_url)
            finally:
                fleet.stop_all()
    finally:
        server.stop()


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(stack.nats_url)
    yield client
    await client.close()


async def registry(nc: nats.NATS) -> KeyValue:
    return await tenants.registry_bucket(nc.jetstream())


def task_of(tenant_id: str, task_id: str) -> TaskSubmitted:
    request = ChatRequest(messages=[ChatMessage(role="user", content=f"Say hello ({task_id})")])
    return TaskSubmitted(
        task_id=task_id, tenant_id=tenant_id, request=request, submitted_at=datetime.now(UTC)
    )


async def submit(nc: nats.NATS, task: TaskSubmitted) -> tuple[Any, float]:
    """Publishes `task` as another system does; its result (decoded) and how long it took to come."""
    sub = await nc.subscribe(subjects.result_subject(task.tenant_id, task.task_id))
    started = time.monotonic()
    await bus.EventPublisher(nc.jetstream(), source="test/integrator").publish(
        task, event_id=ids.new_id(), tenant_id=task.tenant_id, event_subject=task.task_id
    )
    msg = await sub.next_msg(timeout=60)
    await sub.unsubscribe()
    return decode(msg.data)[1], time.monotonic() - started


async def dead_letters(nc: nats.NATS, service: str) -> list[tuple[dict[str, str], bytes]]:
    js = nc.jetstream()
    try:
        sub = await js.pull_subscribe(
            subjects.dlq_subject(service),
            stream=subjects.STREAM_DLQ,
            config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.NONE),
        )
    except nats.js.errors.NotFoundError:
        return []
    out: list[tuple[dict[str, str], bytes]] = []
    try:
        while True:
            try:
                out.extend((dict(m.headers or {}), m.data) for m in await sub.fetch(100, timeout=1.0))
            except (nats.errors.TimeoutError, TimeoutError):
                return out
    finally:
        await sub.unsubscribe()


def sent_to_provider(fake: FakeOpenAI, task_id: str) -> bool:
    return any(task_id in json.dumps(r.body) for r in fake.requests)


async def billed(db_url: str, task_id: str) -> int:
    engine = create_engine(db_url)
    try:
        async with sessionmaker(engine)() as session:
            found = await session.execute(select(UsageEntry).where(UsageEntry.task_id == task_id))
            return len(list(found.scalars()))
    finally:
        await engine.dispose()


async def test_a_registry_nobody_keeps_lets_every_tenant_through_then_refuses_the_unknown(
    stack: Stack, nc: nats.NATS
) -> None:
    """First in this module: the pipeline alone (no gateway has kept the registry) runs any tenant, as
    before; once the registry is kept, an unknown tenant is refused and a registered one runs, also one
    registered a moment before its task (read from the server, not refused from the watch's view)."""
    before, _ = await submit(nc, task_of("nobody-keeps", "t-open"))
    assert isinstance(before, TaskCompleted)

    bucket = await registry(nc)
    await tenants.register(bucket, "acme", name="Acme")
    await tenants.mark_kept(bucket, by="test")
    await asyncio.sleep(0.5)  # the watch carries `kept`

    task = task_of("acme-typo", "t-typo")
    refused, waited = await submit(nc, task)
    assert isinstance(refused, TaskFailed)
    assert refused.error_code == "unknown_tenant"
    assert "'acme-typo' is no organisation" in refused.error_message
    assert waited < 5.0, f"answered after {waited:.1f} s"
    print(f"\nan unknown tenant's task answered in {waited * 1000:.0f} ms")
    letters = [h for h, body in await dead_letters(nc, "classifier") if b"t-typo" in body]
    assert len(letters) == 1 and letters[0]["Switchyard-Dlq-Code"] == "unknown_tenant"
    assert "acme-typo" in letters[0]["Switchyard-Dlq-Reason"]
    await asyncio.sleep(1.0)
    assert not sent_to_provider(stack.fake, "t-typo")
    assert await billed(stack.db_url, "t-typo") == 0

    ran, _ = await submit(nc, task_of("acme", "t-acme"))
    assert isinstance(ran, TaskCompleted)

    await tenants.register(bucket, "fresh-org")
    fresh, _ = await submit(nc, task_of("fresh-org", "t-fresh"))
    assert isinstance(fresh, TaskCompleted), fresh


async def test_an_erased_organisations_tasks_are_refused(stack: Stack, nc: nats.NATS) -> None:
    bucket = await registry(nc)
    await tenants.register(bucket, "leaving", name="Leaving Ltd")
    await tenants.mark_kept(bucket, by="test")
    ran, _ = await submit(nc, task_of("leaving", "t-leaving-1"))
    assert isinstance(ran, TaskCompleted)

    await tenants.erase(bucket, "leaving")
    await asyncio.sleep(0.5)  # the watch carries it (else the entry read again within TRUST_S)
    assert not await tenants.register(bucket, "leaving")  # erased stays erased
    refused, _ = await submit(nc, task_of("leaving", "t-leaving-2"))
    assert isinstance(refused, TaskFailed) and refused.error_code == "unknown_tenant"
    assert "was erased" in refused.error_message
    await asyncio.sleep(1.0)
    assert not sent_to_provider(stack.fake, "t-leaving-2")


async def test_a_classified_event_of_an_unknown_tenant_never_submitted_is_refused_by_the_executor(
    stack: Stack, nc: nats.NATS
) -> None:
    """Whoever may publish on `switchyard.task.classified` skips the classifier (and its check): the
    executor checks again before any provider call."""
    bucket = await registry(nc)
    await tenants.mark_kept(bucket, by="test")
    task = task_of("forged-tenant", "t-forged")
    sub = await nc.subscribe(subjects.result_subject(task.tenant_id, task.task_id))
    classified = TaskClassified(
        task=task,
        classification=Classification(
            type="chitchat", confidence=0.9, complexity=0.1, urgency=0.1, model_version="t", latency_ms=1
        ),
    )
    await bus.EventPublisher(nc.jetstream(), source="test/forger").publish(
        classified, event_id=ids.new_id(), tenant_id=task.tenant_id, event_subject=task.task_id
    )
    result = decode((await sub.next_msg(timeout=60)).data)[1]
    assert isinstance(result, TaskFailed) and result.error_code == "unknown_tenant"
    letters = [h for h, body in await dead_letters(nc, "executor") if b"t-forged" in body]
    assert len(letters) == 1 and letters[0]["Switchyard-Dlq-Code"] == "unknown_tenant"
    await asyncio.sleep(1.0)
    assert not sent_to_provider(stack.fake, "t-forged")
    assert await billed(stack.db_url, "t-forged") == 0


def test_switchyard_tenants_registers_for_a_bus_only_deployment(stack: Stack) -> None:
    """A deployment without the gateway registers its tenants with the CLI; a task of one then runs."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "switchyard.cli.main", "tenants", "--nats-url", stack.nats_url, *args],
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    added = cli("add", "bus-only-org", "--name", "Bus Only")
    assert added.returncode == 0, added.stderr
    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["tenant_id"]: row for row in orjson.loads(listed.stdout)["tenants"]}
    assert rows["bus-only-org"]["status"] == "active" and rows["bus-only-org"]["name"] == "Bus Only"
    assert orjson.loads(listed.stdout)["kept"] is True

    async def run() -> tuple[Any, Any]:
        client = await nats.connect(stack.nats_url)
        try:
            ok, _ = await submit(client, task_of("bus-only-org", "t-bus-only"))
            assert cli("erase", "bus-only-org").returncode != 0  # needs --yes
            assert cli("erase", "bus-only-org", "--yes").returncode == 0
            await asyncio.sleep(0.5)
            gone, _ = await submit(client, task_of("bus-only-org", "t-bus-only-2"))
            return ok, gone
        finally:
            await client.close()

    ok, gone = asyncio.run(run())
    assert isinstance(ok, TaskCompleted)
    assert isinstance(gone, TaskFailed) and gone.error_code == "unknown_tenant"


async def test_a_scoped_submission_naming_another_tenant_is_answered_to_its_sender_alone(
    stack: Stack, nc: nats.NATS
) -> None:
    """On globex's scoped subject (`switchyard.task.submitted.<globex's token>`) a task naming acme, and a
    real one of globex: the first is dead-lettered `tenant_mismatch`, answered on globex's result subject
    as globex's, never sent to a provider, billed to neither; acme hears nothing; the second runs."""
    bucket = await registry(nc)
    for tenant in ("acme", "globex"):
        await tenants.register(bucket, tenant)
    await tenants.mark_kept(bucket, by="test")
    await asyncio.sleep(0.5)  # the watch carries them: the classifier knows globex's token
    acmes = await nc.subscribe(subjects.result_subject("acme", "t-mismatch"))
    globexs = await nc.subscribe(subjects.result_subject("globex", "t-mismatch"))
    publisher = bus.EventPublisher(nc.jetstream(), source="test/integrator")
    scoped = subjects.scoped(subjects.TASK_SUBMITTED, "globex")
    await publisher.publish(
        task_of("acme", "t-mismatch"), subject=scoped, event_id=ids.new_id(), tenant_id="acme"
    )
    answer = decode((await globexs.next_msg(timeout=30)).data)[1]
    assert isinstance(answer, TaskFailed) and answer.error_code == "tenant_mismatch", answer
    assert answer.tenant_id == "globex" and answer.task_id == "t-mismatch"
    letters = [h for h, body in await dead_letters(nc, "classifier") if b"t-mismatch" in body]
    assert len(letters) == 1 and letters[0]["Switchyard-Dlq-Code"] == "tenant_mismatch"
    assert letters[0]["Switchyard-Dlq-Subject"] == scoped
    with pytest.raises(nats.errors.TimeoutError):
        await acmes.next_msg(timeout=1.0)
    assert not sent_to_provider(stack.fake, "t-mismatch")
    assert await billed(stack.db_url, "t-mismatch") == 0

    # an invalid one there naming acme (a misspelt field): told to globex too, never to acme
    broken = task_of("acme", "t-broken").model_dump(mode="json")
    broken["request"]["mesages"] = broken["request"].pop("messages")
    acme_broken = await nc.subscribe(subjects.result_subject("acme", "t-broken"))
    told = await nc.subscribe(subjects.result_subject("globex", "t-broken"))
    event = {
        "specversion": "1.0",
        "id": "ext-broken",
        "source": "urn:other",
        "type": TaskSubmitted.EVENT_TYPE,
    }
    await nc.jetstream().publish(scoped, orjson.dumps({**event, "data": broken}))
    invalid = decode((await told.next_msg(timeout=30)).data)[1]
    assert isinstance(invalid, TaskFailed) and invalid.error_code == "invalid_event", invalid
    assert invalid.tenant_id == "globex"
    with pytest.raises(nats.errors.TimeoutError):
        await acme_broken.next_msg(timeout=1.0)

    mine = await nc.subscribe(subjects.result_subject("globex", "t-scoped"))
    await publisher.publish(
        task_of("globex", "t-scoped"), subject=scoped, event_id=ids.new_id(), tenant_id="globex"
    )
    ran = decode((await mine.next_msg(timeout=60)).data)[1]
    assert isinstance(ran, TaskCompleted), ran
    for _ in range(50):
        if await billed(stack.db_url, "t-scoped") == 1:
            break
        await asyncio.sleep(0.2)
    assert await billed(stack.db_url, "t-scoped") == 1
