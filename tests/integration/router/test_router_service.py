"""`python -m switchyard.router` on a real nats-server: decisions with their reasons, the policy reloaded
without a restart, budget headroom and learned provider health read from JetStream KV, and the EMA
statistics shared by two router replicas."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import orjson
import pytest
import yaml
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, kv, subjects
from switchyard.common.budgets import BudgetHeadroom, budgets_bucket, write_headroom
from switchyard.common.envelope import decode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    EmbeddingRequest,
    ProviderCallRecorded,
    TaskClassified,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
)
from switchyard.common.policy import DEFAULT_POLICY
from switchyard.common.providers import ProviderStatus, announce, providers_bucket
from switchyard.common.tokens import count_text
from switchyard.router.health import ModelStats
from tests.integration.pipeline.services import Fleet

pytestmark = pytest.mark.integration


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    shutil.copy(DEFAULT_POLICY, path)
    return path


@pytest.fixture
def routers(nats_server: NatsServer, tmp_path: Path, policy_file: Path) -> Iterator[Fleet]:
    env = {
        "SWITCHYARD_NATS_URL": nats_server.url,
        "SWITCHYARD_POLICY_PATH": str(policy_file),
        "SWITCHYARD_POLICY_CHECK_S": "0.2",
        "SWITCHYARD_HEALTH_REFRESH_S": "0.2",
    }
    fleet = Fleet(tmp_path, env)
    try:
        fleet.start("switchyard.router", name="router-a")
        fleet.start("switchyard.router", name="router-b")
        fleet.wait_ready()
        yield fleet
    finally:
        fleet.stop_all()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    await bus.ensure_streams(js)
    bucket = await providers_bucket(js)
    for name in ("openai", "anthropic", "local"):
        await announce(bucket, ProviderStatus(provider=name, endpoint="test", announced_by="test"))
    yield client
    await client.close()


async def route(
    nc: nats.NATS,
    *,
    complexity: float,
    tenant: str = "acme",
    task_type: str = "qa",
    request: ChatRequest | None = None,
) -> TaskRouted:
    task_id = ids.new_id()
    got: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def on_routed(msg: Msg) -> None:
        _, payload = decode(msg.data)
        if isinstance(payload, TaskRouted) and payload.task.task_id == task_id and not got.done():
            got.set_result(msg)

    sub = await nc.subscribe(subjects.TASK_ROUTED, cb=on_routed)
    request = request or ChatRequest(
        messages=[ChatMessage(role="user", content="Summarise the causes of WWI.")]
    )
    task = TaskSubmitted(task_id=task_id, tenant_id=tenant, request=request, submitted_at=datetime.now(UTC))
    classified = TaskClassified(
        task=task,
        classification=Classification(
            type=task_type,
            confidence=0.9,
            complexity=complexity,
            urgency=0.5,
            model_version="t",
            latency_ms=1,
        ),
    )
    await bus.EventPublisher(nc.jetstream(), source="test/classifier").publish(
        classified, event_id=ids.new_id(), tenant_id=tenant, event_subject=task_id
    )
    try:
        msg = await asyncio.wait_for(got, timeout=20)
    finally:
        await sub.unsubscribe()
    _, payload = decode(msg.data)
    assert isinstance(payload, TaskRouted)
    return payload


async def eventually(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_decisions_carry_reasons_and_real_token_counts(routers: Fleet, nc: nats.NATS) -> None:
    routed = await route(nc, complexity=0.95)
    d = routed.decision
    assert d.tier == "premium" and d.candidates[0].model == "openai/gpt-6.1-sol"
    text = routed.task.request.messages[0].text()
    assert d.reasons["features"]["prompt_tokens"] == count_text(text) + 3 + 3  # cl100k, plus chat framing
    assert d.estimated_cost_usd > 0 and d.reasons["scores"][0]["model"] == "openai/gpt-6.1-sol"


async def test_a_task_asking_for_truncation_is_cut_to_fit_its_models_window(
    routers: Fleet, nc: nats.NATS
) -> None:
    """The Responses API's `truncation: "auto"` (a long conversation): ~7,500 tokens for a model of 2,048
    are routed with their oldest turns dropped, the system message kept, starting at a user's turn. It
    failed context_length_exceeded, truncation or not."""
    turns = [ChatMessage(role="system", content="Be brief.")]
    for n in range(12):
        turns.append(ChatMessage(role="user", content=f"question {n} " + "word " * 300))
        turns.append(ChatMessage(role="assistant", content=f"answer {n} " + "word " * 300))
    turns.append(ChatMessage(role="user", content="And now?"))
    local = "local/smollm2-135m-instruct"
    routed = await route(
        nc, complexity=0.1, request=ChatRequest(model=local, messages=turns, truncation="auto")
    )
    kept = routed.task.chat().messages
    assert kept[0].content == "Be brief." and kept[1].role == "user" and kept[-1].content == "And now?"
    assert 3 < len(kept) < len(turns) and kept[1:] == turns[len(turns) - len(kept) + 1 :]
    assert routed.decision.candidates[0].model == local
    assert routed.decision.estimated_prompt_tokens <= 2048


async def test_the_policy_reloads_without_a_restart(routers: Fleet, nc: nats.NATS, policy_file: Path) -> None:
    assert (await route(nc, complexity=0.5)).decision.reasons["wanted_tier"] == "standard"
    raw = yaml.safe_load(policy_file.read_text())
    raw["thresholds"]["premium_above"] = 0.4
    raw["version"] = "reloaded"
    policy_file.write_text(yaml.safe_dump(raw))
    await asyncio.sleep(0.6)
    routed = await route(nc, complexity=0.5)
    assert routed.decision.policy_version == "reloaded" and routed.decision.tier == "premium"
    policy_file.write_text("version: [broken\n")  # a bad edit keeps the last good policy
    await asyncio.sleep(0.6)
    assert (await route(nc, complexity=0.5)).decision.policy_version == "reloaded"
    assert all(p.popen.poll() is None for p in routers.procs)
    assert any("policy not reloaded" in p.tail(20000) for p in routers.procs)


async def test_budget_headroom_from_kv_downgrades_a_tenant(routers: Fleet, nc: nats.NATS) -> None:
    bucket = await budgets_bucket(nc.jetstream())
    await write_headroom(bucket, "poor", BudgetHeadroom(headroom_usd=0.2, limit_usd=5.0, spent_usd=4.8))
    # What the gateway writes for an organisation without a monthly budget: no limit.
    await bucket.put(
        "unbounded",
        b'{"headroom_usd": null, "limit_usd": null, "spent_usd": 1.5, "period": "202611", "updated_at": 1.0}',
    )
    routed = await route(nc, complexity=0.95, tenant="poor")
    assert routed.decision.reasons["budget"]["state"] == "low" and routed.decision.tier == "fast"
    assert (await route(nc, complexity=0.95, tenant="rich")).decision.tier == "premium"  # no entry: no limit
    unbounded = (await route(nc, complexity=0.95, tenant="unbounded")).decision
    assert unbounded.tier == "premium" and unbounded.reasons["budget"]["state"] == "unlimited"


async def test_replicas_learn_health_together_and_demote_a_failing_model(
    routers: Fleet, nc: nats.NATS
) -> None:
    publisher = bus.EventPublisher(nc.jetstream(), source="test/executor")
    for n in range(12):
        call = ProviderCallRecorded(
            task_id=f"t{n}",
            tenant_id="acme",
            attempt=1,
            provider="openai",
            model="openai/gpt-6.1-sol",
            outcome="overloaded",
            latency_ms=30.0,
        )
        await publisher.publish(call, event_id=f"call-{n}")
    await publisher.publish(call, event_id="call-11")  # a duplicate: not counted twice
    bucket = await kv.bucket(nc.jetstream(), subjects.KV_ROUTING_STATS)

    async def learned() -> bool:
        raw, _ = await kv.read(bucket, kv.safe_key("openai/gpt-6.1-sol"))
        return raw is not None and ModelStats.model_validate_json(raw).samples == 12

    await eventually(learned)
    await asyncio.sleep(0.5)  # both replicas' health views refresh
    for _ in range(2):  # whichever replica routes it
        d = (await route(nc, complexity=0.95)).decision
        assert d.candidates[0].model == "anthropic/claude-opus-5-5"
        demoted = {s["model"]: s["demoted"] for s in d.reasons["scores"] if s["demoted"]}
        # demoted for its success EMA, learned near zero (the penalty fades with time, so not exactly 0)
        reason = demoted["openai/gpt-6.1-sol"]
        assert reason.startswith("success EMA ") and float(reason.split()[2]) < 0.05, reason


async def _route_embedding(
    nc: nats.NATS, request: EmbeddingRequest, tenant: str = "acme"
) -> TaskRouted | TaskFailed:
    task_id = ids.new_id()
    got: asyncio.Future[TaskRouted | TaskFailed] = asyncio.get_running_loop().create_future()

    async def on_msg(msg: Msg) -> None:
        _, payload = decode(msg.data)
        mine = isinstance(payload, TaskRouted) and payload.task.task_id == task_id
        mine = mine or (isinstance(payload, TaskFailed) and payload.task_id == task_id)
        if mine and not got.done():
            got.set_result(payload)  # type: ignore[arg-type]

    subs = [
        await nc.subscribe(subjects.TASK_ROUTED, cb=on_msg),
        await nc.subscribe(subjects.result_subject(tenant, task_id), cb=on_msg),
    ]
    task = TaskSubmitted(task_id=task_id, tenant_id=tenant, request=request, submitted_at=datetime.now(UTC))
    passed = Classification(
        type="embedding", confidence=1, complexity=0, urgency=0.4, model_version="passthrough", latency_ms=0
    )
    await bus.EventPublisher(nc.jetstream(), source="test/classifier").publish(
        TaskClassified(task=task, classification=passed), event_id=ids.new_id(), tenant_id=tenant
    )
    try:
        return await asyncio.wait_for(got, timeout=20)
    finally:
        for sub in subs:
            await sub.unsubscribe()


async def test_an_embedding_task_is_routed_to_its_model_with_real_token_counts(
    routers: Fleet, nc: nats.NATS
) -> None:
    texts = ["Summarise the causes of WWI.", "The Treaty of Versailles was signed in 1919.", "héllo wörld"]
    routed = await _route_embedding(
        nc, EmbeddingRequest(model="openai/text-embedding-3-small", input=texts, dimensions=512)
    )
    assert isinstance(routed, TaskRouted)
    d = routed.decision
    assert d.strategy == "single" and [c.model for c in d.candidates] == ["openai/text-embedding-3-small"]
    assert d.candidates[0].dimensions == 512
    tokens = sum(count_text(t) for t in texts)  # cl100k, each input, no chat framing
    assert d.estimated_prompt_tokens == tokens == d.reasons["features"]["prompt_tokens"]
    assert d.estimated_cost_usd == pytest.approx(tokens * 0.00002 / 1000)
    assert d.reasons["kind"] == "embedding" and d.reasons["pinned"] == "openai/text-embedding-3-small"
    assert routed.classification.type == "embedding" and routed.task.embedding() is not None


async def test_an_embedding_task_that_cannot_be_served_fails_with_the_reason(
    routers: Fleet, nc: nats.NATS
) -> None:
    auto = await _route_embedding(nc, EmbeddingRequest(model="auto", input=["x"]))
    assert isinstance(auto, TaskFailed) and auto.error_code == "model_lacks_capability"
    assert "embeddings need an embedding model: one of local/all-minilm-l6-v2" in auto.error_message
    short = await _route_embedding(
        nc, EmbeddingRequest(model="local/all-minilm-l6-v2", input=["x"], dimensions=128)
    )
    assert isinstance(short, TaskFailed) and short.error_code == "embedding_dimensions_unsupported"
    many = await _route_embedding(
        nc, EmbeddingRequest(model="openai/text-embedding-ada-002", input=["x"] * 1100, dimensions=8192)
    )
    assert isinstance(many, TaskFailed) and many.error_code == "embedding_result_too_large"
    assert "send at most 1024 inputs" in many.error_message


async def test_a_classified_event_the_router_cannot_read_is_answered_not_left_waiting(
    routers: Fleet, nc: nats.NATS
) -> None:
    """A classification of a type this router does not know (a newer classifier in a rolling deploy,
    another system's event): dead-lettered, and its task's submitter told at once (`invalid_event`)
    instead of waiting for its own timeout."""
    task = TaskSubmitted(
        task_id=ids.new_id(),
        tenant_id="acme",
        request=ChatRequest(messages=[ChatMessage(role="user", content="hi")]),
        submitted_at=datetime.now(UTC),
    )
    data = {
        "task": task.model_dump(mode="json"),
        "classification": {
            "type": "poetry",
            "confidence": 0.9,
            "complexity": 0.5,
            "urgency": 0.5,
            "model_version": "t",
            "latency_ms": 1,
        },
    }
    event = {
        "specversion": "1.0",
        "id": ids.new_id(),
        "source": "test/classifier",
        "type": TaskClassified.EVENT_TYPE,
        "datacontenttype": "application/json",
        "data": data,
    }
    sub = await nc.subscribe(subjects.result_subject(task.tenant_id, task.task_id))
    await nc.jetstream().publish(subjects.TASK_CLASSIFIED, orjson.dumps(event))
    _, failed = decode((await sub.next_msg(timeout=20)).data)
    await sub.unsubscribe()
    assert isinstance(failed, TaskFailed) and failed.error_code == "invalid_event"
    assert failed.tenant_id == "acme" and "classification.type" in failed.error_message
