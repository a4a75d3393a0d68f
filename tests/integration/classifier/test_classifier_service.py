"""The classifier as its own process on a real nats-server: tasks in, classified events out, poison to DLQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import pytest
from sqlalchemy import select

from switchyard.classifier.classify import Classifier
from switchyard.classifier.outcomes.models import OutcomeFeatures
from switchyard.cli.processes import NatsServer, free_port
from switchyard.common import bus, ids, subjects
from switchyard.common.db import create_engine
from switchyard.common.envelope import decode
from switchyard.common.events import (
    ChatRequest,
    Classification,
    EmbeddingRequest,
    TaskClassified,
    TaskSubmitted,
)
from switchyard.common.events.tasks import TASK_TYPES
from tests.support import event_ids
from tests.support.bus_services import BusService

pytestmark = pytest.mark.integration
TENANTS = ("acme", "globex")


@pytest.fixture
def classifier(
    nats_server: NatsServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[NatsServer]:
    env = {"SWITCHYARD_NATS_URL": nats_server.url, "SWITCHYARD_CLASSIFIER_WORKERS": "16", **event_ids.ENV}
    env.update(getattr(request, "param", {}))
    service = BusService("classifier", env=env, log_path=tmp_path / "classifier.log")
    asyncio.run(service.start(timeout=90))
    try:
        yield nats_server
    finally:
        service.stop()


@pytest.fixture
async def client(classifier: NatsServer) -> AsyncIterator[nats.NATS]:
    nc = await nats.connect(classifier.url)
    yield nc
    await nc.close()


def _task(task_id: str, prompt: str, *, tenant: str = "acme", **kw: object) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        tenant_id=tenant,
        request=ChatRequest(messages=[{"role": "user", "content": prompt}]),
        submitted_at=datetime.now(UTC),
        **kw,
    )


async def test_submitted_tasks_come_back_classified(client: nats.NATS) -> None:
    got: dict[str, tuple[str, TaskClassified]] = {}
    done = asyncio.Event()
    tasks = {
        "code": _task("code", "Write a Python function that reverses a linked list, with unit tests."),
        "urgent": _task(
            "urgent",
            "Production is down, what do I check first?",
            priority="high",
            deadline=datetime.now(UTC) + timedelta(seconds=30),
        ),
        "empty": _task("empty", ""),
        "huge": _task("huge", "Summarise this. " + "lorem ipsum dolor sit amet " * 40_000 + " The end?"),
        "binary": _task("binary", "\x00\x01\x02\ufffd\x7f" * 500),
        "chinese": _task("chinese", "请用三句话总结这篇文章的主要内容。"),
        "code_only": _task("code_only", "def f(x):\n    return {k: v for k, v in x.items() if v}\n" * 20),
    }

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        event, payload = decode(msg.data, (TaskClassified,))
        assert isinstance(payload, TaskClassified)
        got[payload.task.task_id] = (event.id, payload)
        if len(got) == len(tasks):
            done.set()

    await client.subscribe(subjects.TASK_CLASSIFIED, cb=on_msg)
    publisher = bus.EventPublisher(client.jetstream(), source="test/gateway")
    sent = {tid: await publisher.publish(t, tenant_id="acme") for tid, t in tasks.items()}
    await asyncio.wait_for(done.wait(), 30)

    for tid, (event_id, payload) in got.items():
        c = payload.classification
        assert event_id == event_ids.derived(sent[tid], "classified", tenant_id="acme")
        assert c.type in TASK_TYPES and 0 <= c.confidence <= 1 and 0 <= c.complexity <= 1
        assert abs(sum(c.scores.values()) - 1) < 0.01 and c.model_version and c.latency_ms > 0
    assert got["huge"][1].classification.truncated
    assert not got["code"][1].classification.truncated
    assert got["urgent"][1].classification.urgency >= 0.85 > got["code"][1].classification.urgency
    assert got["code"][1].classification.type == "coding"


async def test_garbage_on_the_submitted_subject_goes_to_the_dead_letter_stream(client: nats.NATS) -> None:
    js = client.jetstream()
    await js.publish(subjects.TASK_SUBMITTED, b"\xff\xfenot an event", headers={"Nats-Msg-Id": ids.new_id()})
    deadline = time.monotonic() + 15
    while True:
        try:
            msg = await js.get_last_msg(subjects.STREAM_DLQ, subjects.dlq_subject("classifier"))
            break
        except nats.js.errors.NotFoundError:
            assert time.monotonic() < deadline, "nothing reached the dead-letter stream"
            await asyncio.sleep(0.1)
    assert msg.data == b"\xff\xfenot an event"
    assert msg.headers is not None and msg.headers["Switchyard-Dlq-Code"] == "invalid_event"
    assert msg.headers["Switchyard-Dlq-Reason"]


BATCHED_PROMPTS = [
    "hi",
    "What is the capital of Australia?",
    "Write a haiku about autumn leaves falling on a quiet pond.",
    "Summarise the following paragraph in one sentence: "
    + "The council met on Tuesday to discuss the budget. " * 12,
    "Solve for x: 3x + 7 = 22, and show each step.",
    "Extract every date and amount from this invoice: 2024-03-01 $120.50; 2024-03-15 $89.99; 2024-04-02 $12.",
    "请用三句话总结这篇文章的主要内容。",
    "Почему небо голубое? Объясни простыми словами.",
    "def f(x):\n    return [y * 2 for y in x if y % 3]\n# why does this skip 3?",
    "Plan a three-step agent workflow: search flights, compare prices, then book the cheapest via the API.",
    "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? Explain.",
    "Tell me about your weekend!",
] * 2


@pytest.mark.parametrize("classifier", [{"SWITCHYARD_CLASSIFIER_MAX_WAIT_MS": "50"}], indirect=True)
async def test_a_tasks_classification_does_not_depend_on_the_tasks_batched_with_it(client: nats.NATS) -> None:
    """Tasks arriving together are classified in one batch (the batcher waits 50 ms for company here);
    each must come out exactly as the offline classifier scores its prompt alone, whatever else (of any
    tenant) shared its batch."""
    got: dict[str, TaskClassified] = {}
    done = asyncio.Event()

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        _, payload = decode(msg.data, (TaskClassified,))
        assert isinstance(payload, TaskClassified)
        got[payload.task.task_id] = payload
        if len(got) == len(BATCHED_PROMPTS):
            done.set()

    await client.subscribe(subjects.TASK_CLASSIFIED, cb=on_msg)
    publisher = bus.EventPublisher(client.jetstream(), source="test/gateway")
    await asyncio.gather(
        *(
            publisher.publish(_task(f"t{i}", prompt, tenant=TENANTS[i % 2]), tenant_id=TENANTS[i % 2])
            for i, prompt in enumerate(BATCHED_PROMPTS)
        )
    )
    await asyncio.wait_for(done.wait(), 30)

    offline = Classifier.load()
    for i, prompt in enumerate(BATCHED_PROMPTS):
        alone = offline.predict([prompt])[0]
        c = got[f"t{i}"].classification
        assert c.model_version == offline.model_version
        assert (c.type, c.confidence, c.complexity, c.scores) == (
            alone.type,
            alone.confidence,
            alone.complexity,
            alone.scores,
        ), prompt


async def test_a_tenants_repeated_user_turns_reuse_their_prediction_and_no_other_tenants(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """An agent's tool loop re-sends the same user turns with each tool result: the second turn is not
    encoded again, and gets the first one's prediction (with its own urgency). The same text from another
    tenant is classified afresh."""
    metrics_port = free_port()
    service = BusService(
        "classifier",
        env={
            "SWITCHYARD_NATS_URL": nats_server.url,
            "SWITCHYARD_METRICS_PORT": str(metrics_port),
            **event_ids.ENV,
        },
        log_path=tmp_path / "classifier.log",
    )
    await service.start(timeout=90)
    ask = {"role": "user", "content": "What's the weather in Lisbon tomorrow? Use the forecast tool."}
    loop_turn = [
        ask,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "forecast", "arguments": '{"city":"Lisbon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"high": 19, "low": 12, "rain": 0.1}'},
    ]
    tasks = [
        ("first", "acme", [ask], {}),
        ("loop", "acme", loop_turn, {"priority": "high"}),
        ("other", "globex", [ask], {}),
    ]
    nc = await nats.connect(nats_server.url)
    try:
        publisher = bus.EventPublisher(nc.jetstream(), source="test/gateway")
        sub = await nc.subscribe(subjects.TASK_CLASSIFIED)
        got: dict[str, TaskClassified] = {}
        for task_id, tenant, messages, extra in tasks:  # one at a time: each finds the one before it kept
            await publisher.publish(
                TaskSubmitted(
                    task_id=task_id,
                    tenant_id=tenant,
                    request=ChatRequest(messages=messages),
                    submitted_at=datetime.now(UTC),
                    **extra,
                ),
                tenant_id=tenant,
            )
            _, payload = decode((await sub.next_msg(timeout=30)).data, (TaskClassified,))
            assert isinstance(payload, TaskClassified) and payload.task.task_id == task_id
            got[task_id] = payload
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    finally:
        await nc.close()
        service.stop()

    def prediction(task_id: str) -> tuple[object, ...]:
        c = got[task_id].classification
        return c.type, c.confidence, c.complexity, c.scores, c.truncated, c.model_version

    assert prediction("loop") == prediction("first") == prediction("other")
    assert got["loop"].classification.urgency > got["first"].classification.urgency  # its own priority
    assert 'switchyard_classifier_predictions_total{source="encoder"} 2.0' in metrics
    assert 'switchyard_classifier_predictions_total{source="reused"} 1.0' in metrics


async def test_an_embedding_task_comes_back_classified_without_the_encoder(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """An embedding task has no type to learn: it is published classified `embedding` (pass-through),
    with its urgency from its metadata, and neither the encoder nor the reuse cache sees its texts."""
    metrics_port = free_port()
    service = BusService(
        "classifier",
        env={
            "SWITCHYARD_NATS_URL": nats_server.url,
            "SWITCHYARD_METRICS_PORT": str(metrics_port),
            **event_ids.ENV,
        },
        log_path=tmp_path / "classifier.log",
    )
    await service.start(timeout=90)
    nc = await nats.connect(nats_server.url)
    try:
        publisher = bus.EventPublisher(nc.jetstream(), source="test/gateway")
        sub = await nc.subscribe(subjects.TASK_CLASSIFIED)
        embedding = TaskSubmitted(
            task_id="emb",
            tenant_id="acme",
            request=EmbeddingRequest(
                model="local/all-minilm-l6-v2", input=["Production is down, urgent!", "a second text"]
            ),
            priority="high",
            submitted_at=datetime.now(UTC),
        )
        sent = await publisher.publish(embedding, tenant_id="acme")
        event, payload = decode((await sub.next_msg(timeout=30)).data, (TaskClassified,))
        await publisher.publish(_task("chat", "What is the capital of Australia?"), tenant_id="acme")
        _, chat = decode((await sub.next_msg(timeout=30)).data, (TaskClassified,))
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    finally:
        await nc.close()
        service.stop()

    assert isinstance(payload, TaskClassified) and event.id == event_ids.derived(
        sent, "classified", tenant_id="acme"
    )
    assert payload.task == embedding  # the texts travel on unchanged, for the router and the executor
    c = payload.classification
    assert (c.type, c.confidence, c.complexity, c.model_version) == ("embedding", 1.0, 0.0, "passthrough")
    assert c.urgency == 0.75 and c.scores == {}  # high priority; the word "urgent" in a corpus is not a cue
    assert isinstance(chat, TaskClassified) and chat.classification.type in TASK_TYPES
    assert 'switchyard_classifier_predictions_total{source="passthrough"} 1.0' in metrics
    assert 'switchyard_classifier_predictions_total{source="encoder"} 1.0' in metrics  # the chat task only


async def test_the_outcome_recorder_skips_embedding_tasks(
    nats_server: NatsServer, sqlite_url: str, tmp_path: Path
) -> None:
    """A consenting tenant's embedding task is not a classified prompt: the recorder keeps no features
    for it (and does not fail on it), while the chat task after it is recorded."""
    recorder = BusService(
        "classifier-outcomes",
        module="switchyard.classifier.outcomes",
        env={
            "SWITCHYARD_NATS_URL": nats_server.url,
            "SWITCHYARD_DATABASE_URL": sqlite_url,
            "SWITCHYARD_CLASSIFIER_OUTCOME_TENANTS": '["acme"]',
        },
        log_path=tmp_path / "recorder.log",
    )
    await recorder.start(timeout=90)
    engine = create_engine(sqlite_url)
    nc = await nats.connect(nats_server.url)
    try:
        publisher = bus.EventPublisher(nc.jetstream(), source="test/classifier")
        embedding = TaskSubmitted(
            task_id="emb",
            tenant_id="acme",
            request=EmbeddingRequest(model="local/all-minilm-l6-v2", input=["a text to embed"]),
            submitted_at=datetime.now(UTC),
        )
        passed = Classification(
            type="embedding",
            confidence=1,
            complexity=0,
            urgency=0.4,
            model_version="passthrough",
            latency_ms=0,
        )
        await publisher.publish(TaskClassified(task=embedding, classification=passed), tenant_id="acme")
        chat = Classification(
            type="qa", confidence=0.9, complexity=0.2, urgency=0.4, model_version="h", latency_ms=1
        )
        await publisher.publish(
            TaskClassified(task=_task("chat", "Why is the sky blue?"), classification=chat)
        )
        deadline = time.monotonic() + 30
        while True:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(OutcomeFeatures.task_id))).scalars().all()
            if rows:
                break
            assert time.monotonic() < deadline, "the chat task was not recorded"
            await asyncio.sleep(0.2)
        info = await nc.jetstream().consumer_info(
            subjects.STREAM_EVENTS, subjects.CLASSIFIER_OUTCOMES_CONSUMER.durable
        )
    finally:
        await nc.close()
        await engine.dispose()
        recorder.stop()
    assert rows == ["chat"]
    assert (
        info.num_redelivered == 0 and info.num_ack_pending == 0
    )  # the embedding task was handled, not failed
    assert "handler failed" not in (tmp_path / "recorder.log").read_text()
