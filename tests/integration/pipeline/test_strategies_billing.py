"""Parallel and cascade through the real pipeline (router, executor, billing as processes): a race's loser
is cancelled and its tokens are billed as a call; a cascade's refused answers are billed as calls; the
delivered answer is billed once with the task."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from sqlalchemy import select

from switchyard.billing.db import migrations as billing_migrations
from switchyard.billing.models import CallUsageEntry, UsageEntry
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, subjects
from switchyard.common.db import create_engine, sessionmaker
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    TaskClassified,
    TaskCompleted,
    TaskRouted,
    TaskSubmitted,
)
from tests.integration.pipeline.services import Fleet
from tests.integration.pipeline.test_acceptance import read_stream, results_for
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration


def model(model_id: str, upstream: str, tier: str, price: float) -> dict[str, Any]:
    provider = model_id.split("/")[0]
    return {
        "id": model_id,
        "provider": provider,
        "upstream": upstream,
        "tier": tier,
        "input_per_1k": price,
        "output_per_1k": price * 2,
        "context_window": 8000,
        # The cascade task asks for JSON: only json_mode models may take it; `choices`: several answers.
        "capabilities": ["json_mode", "choices"],
    }


POLICY = {
    "version": "strategies",
    "models": [
        model("cheap/mini", "gpt-mini", "fast", 0.0001),
        model("sluggish/big", "slow-3", "standard", 0.002),
        model("quick/big", "slow-0.05", "standard", 0.002),
    ],
    "strategies": {
        "cascade": {"types": ["extraction"], "from_tiers": ["standard"]},
        "parallel": {"urgency_above": 0.9, "fan_out": 2},
    },
}


@pytest.fixture
def stack(nats_server: NatsServer, tmp_path: Path) -> Iterator[str]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'switchyard.db'}"
    asyncio.run(billing_migrations().upgrade(db_url))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    fake = FakeOpenAI()
    with BackgroundServer(fake.app) as upstream:
        extra = {
            name: {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": fake.api_key}
            for name in ("cheap", "sluggish", "quick")
        }
        fleet = Fleet(
            tmp_path,
            {
                "SWITCHYARD_NATS_URL": nats_server.url,
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
            fleet.wait_ready()
            yield db_url
        finally:
            fleet.stop_all()


@pytest.fixture
async def nc(nats_server: NatsServer, stack: str) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


async def submit(nc: nats.NATS, task_id: str, *, task_type: str, urgency: float, **request: Any) -> None:
    req = ChatRequest(messages=[ChatMessage(role="user", content="Extract the name: Ada")], **request)
    task = TaskSubmitted(task_id=task_id, tenant_id="acme", request=req, submitted_at=datetime.now(UTC))
    event = TaskClassified(
        task=task,
        classification=Classification(
            type=task_type,
            confidence=0.9,
            complexity=0.5,
            urgency=urgency,
            model_version="t",
            latency_ms=1,  # type: ignore[arg-type]
        ),
    )
    await bus.EventPublisher(nc.jetstream(), source="test/classifier").publish(
        event, event_id=ids.new_id(), tenant_id="acme", event_subject=task_id
    )


async def charges(db_url: str, task_id: str, calls: int) -> tuple[list[UsageEntry], list[CallUsageEntry]]:
    engine = create_engine(db_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            async with sessionmaker(engine)() as session:
                tasks = list(
                    (await session.execute(select(UsageEntry).where(UsageEntry.task_id == task_id))).scalars()
                )
                extra = list(
                    (
                        await session.execute(select(CallUsageEntry).where(CallUsageEntry.task_id == task_id))
                    ).scalars()
                )
            if (len(tasks) >= 1 and len(extra) >= calls) or time.monotonic() > deadline:
                await asyncio.sleep(0.5)  # a duplicate charge would show up now
                return tasks, extra
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


async def test_a_race_bills_the_cancelled_loser_and_a_cascade_bills_refused_answers(
    nc: nats.NATS, stack: str
) -> None:
    await submit(nc, "race", task_type="qa", urgency=0.95)
    await submit(nc, "cascade", task_type="extraction", urgency=0.5, response_format={"type": "json_object"})
    found = await results_for(nc, {"race", "cascade"}, timeout=30)
    race, cascade = found["race"][0], found["cascade"][0]
    decisions = {
        p.task.task_id: p.decision
        for _, p in await read_stream(nc, subjects.TASK_ROUTED)
        if isinstance(p, TaskRouted)
    }
    assert decisions["race"].strategy == "parallel" and decisions["cascade"].strategy == "cascade"

    # The race: the slow candidate was asked first but the quick one answered; the loser was cancelled.
    assert isinstance(race, TaskCompleted) and race.model == "quick/big"
    calls = [
        p for _, p in await read_stream(nc, subjects.PROVIDER_CALL) if isinstance(p, ProviderCallRecorded)
    ]
    race_calls = {c.model: c for c in calls if c.task_id == "race"}
    assert race_calls["sluggish/big"].outcome == "cancelled" and race_calls["sluggish/big"].billable
    assert race_calls["quick/big"].outcome == "ok" and not race_calls["quick/big"].billable
    tasks, extra = await charges(stack, "race", 1)
    assert [t.model for t in tasks] == ["quick/big"]
    assert [(e.model, e.outcome, e.usage_estimated) for e in extra] == [("sluggish/big", "cancelled", True)]

    # The cascade: the fake answers in prose, never JSON: each answer is refused and escalated, the
    # last candidate's answer is delivered; the refused ones are billed as calls.
    assert isinstance(cascade, TaskCompleted) and cascade.model == decisions["cascade"].candidates[-1].model
    steps = [c for c in calls if c.task_id == "cascade"]
    assert [c.model for c in steps] == [c.model for c in decisions["cascade"].candidates]
    assert [c.billable for c in steps] == [True] * (len(steps) - 1) + [False]
    tasks, extra = await charges(stack, "cascade", len(steps) - 1)
    assert len(tasks) == 1 and sorted(e.model for e in extra) == sorted(c.model for c in steps[:-1])


async def test_several_answers_are_one_call_billed_for_all_of_them(nc: nats.NATS, stack: str) -> None:
    """`n` = 3 on a task urgent enough to race: one call, no race; the result carries the three answers
    and billing charges the task once, for every answer's tokens."""
    await submit(nc, "three", task_type="qa", urgency=0.95, n=3)
    found = await results_for(nc, {"three"}, timeout=30)
    done = found["three"][0]
    decision = next(
        p.decision
        for _, p in await read_stream(nc, subjects.TASK_ROUTED)
        if isinstance(p, TaskRouted) and p.task.task_id == "three"
    )
    assert decision.strategy == "single" and decision.reasons["features"]["answers"] == 3
    assert isinstance(done, TaskCompleted)
    said = "Hello! You said: Extract the name: Ada"
    assert done.content == said
    assert [c.content for c in done.other_choices] == [f"{said} (answer 2)", f"{said} (answer 3)"]
    calls = [
        p
        for _, p in await read_stream(nc, subjects.PROVIDER_CALL)
        if isinstance(p, ProviderCallRecorded) and p.task_id == "three"
    ]
    assert len(calls) == 1 and calls[0].usage.completion_tokens == 7 + 9 + 9
    tasks, extra = await charges(stack, "three", 0)
    assert extra == [] and [(t.model, t.completion_tokens) for t in tasks] == [(done.model, 25)]
    spec = next(m for m in POLICY["models"] if m["id"] == done.model)
    expected = (11 * spec["input_per_1k"] + 25 * spec["output_per_1k"]) / 1000
    assert float(tasks[0].cost_usd) == pytest.approx(expected)
