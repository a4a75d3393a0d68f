"""A task published again past JetStream's 2-minute duplicate window (another system retrying a publish
whose ack it never saw) is not run again, since its result is on the stream, and that result is sent
again on its result subject: the retrying system, subscribed for the retry, heard nothing before and
waited for an answer that had already come."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, subjects
from switchyard.common.envelope import decode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    RouteCandidate,
    RoutingDecision,
    TaskRouted,
    TaskSubmitted,
)
from tests.integration.executor.test_ack_wait import fleet
from tests.integration.executor.test_scale import nc, replica, results
from tests.integration.pipeline.services import Fleet
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import BackgroundServer

pytestmark = pytest.mark.integration
__all__ = ["fleet", "nc"]  # fixtures shared with test_ack_wait and test_scale
QUICK = RouteCandidate(model="openai/slow-0.1", provider="openai", upstream_model="slow-0.1", tier="fast")


def routed(task_id: str, *, age_s: float = 150.0) -> TaskRouted:
    """A task submitted `age_s` ago (150 s: past the duplicate window, so the executor looks for its
    result)."""
    request = ChatRequest(messages=[ChatMessage(role="user", content=f"task {task_id}")], max_tokens=8)
    task = TaskSubmitted(
        task_id=task_id,
        tenant_id="acme",
        request=request,
        submitted_at=datetime.now(UTC) - timedelta(seconds=age_s),
    )
    return TaskRouted(
        task=task,
        classification=Classification(
            type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
        ),
        decision=RoutingDecision(tier="fast", candidates=[QUICK], policy_version="t"),
    )


async def test_a_retry_past_the_duplicate_window_hears_the_stored_result_again(
    fleet: Fleet, nc: nats.NATS, nats_server: NatsServer, tmp_path: Path
) -> None:
    fake = FakeOpenAI()
    publisher = bus.EventPublisher(nc.jetstream(), source="test/router")
    event = routed("late-1")
    with BackgroundServer(fake.app) as upstream:
        fleet.wait_ready(replica(fleet, 0, upstream.url, fake.api_key))
        await publisher.publish(event, event_id=ids.new_id(), tenant_id="acme", event_subject="late-1")
        first = await results(nc, ["late-1"], timeout=30)
        assert len(first.get("late-1", [])) == 1, first
        stored = await nc.jetstream().get_last_msg(
            subjects.STREAM_EVENTS, subjects.result_subject("acme", "late-1")
        )
        sub = await nc.subscribe(subjects.result_subject("acme", "late-1"))  # the retry's subscription
        await publisher.publish(event, event_id=ids.new_id(), tenant_id="acme", event_subject="late-1")
        again = await sub.next_msg(timeout=15)
    assert json.loads(again.data)["id"] == json.loads(stored.data or b"{}")["id"]  # the same result
    assert again.data == stored.data
    assert fake.scenarios.calls["slow-0.1"] == 1  # run once
    assert again.headers is not None and "Nats-Stream" not in again.headers  # no server marks: not refused


async def test_a_bus_task_id_submitted_again_as_a_new_task_is_answered_by_its_stored_result(
    fleet: Fleet, nc: nats.NATS, nats_server: NatsServer, tmp_path: Path
) -> None:
    """Another system that reuses a task id (a new event, submitted now: inside the duplicate window,
    nothing dedupes it) gets the task's stored result, as the bus contract says, not a second run: billing
    charges a task once, so a second run would be an answer nobody pays for."""
    fake = FakeOpenAI()
    publisher = bus.EventPublisher(nc.jetstream(), source="test/router")
    with BackgroundServer(fake.app) as upstream:
        fleet.wait_ready(replica(fleet, 0, upstream.url, fake.api_key))
        await publisher.publish(routed("reused-1", age_s=0), tenant_id="acme", event_subject="reused-1")
        first = await results(nc, ["reused-1"], timeout=30)
        assert len(first.get("reused-1", [])) == 1, first
        stored = await nc.jetstream().get_last_msg(
            subjects.STREAM_EVENTS, subjects.result_subject("acme", "reused-1")
        )
        sub = await nc.subscribe(subjects.result_subject("acme", "reused-1"))
        await publisher.publish(routed("reused-1", age_s=0), tenant_id="acme", event_subject="reused-1")
        again = await sub.next_msg(timeout=15)
    assert again.data == stored.data  # the same result, not a second answer
    assert fake.scenarios.calls["slow-0.1"] == 1  # run once


async def test_a_bus_task_whose_result_subject_holds_no_result_of_its_tenant_is_run(
    fleet: Fleet, nc: nats.NATS, nats_server: NatsServer, tmp_path: Path
) -> None:
    """What the stream keeps on a task's result subject is not always its result: any bus user (a scoped
    integrator of another organisation too) can have the server's ack of its own publish sent there (NATS
    checks no reply subject) and stored, and a result another tenant's consumer re-delivers there names
    that tenant. A bus task of that id (ids other systems choose) is run and answered, not taken as
    answered: it was acked with no result, and its submitter waited in vain."""
    fake = FakeOpenAI()
    publisher = bus.EventPublisher(nc.jetstream(), source="test/router")
    token = subjects.tenant_token("acme")
    with BackgroundServer(fake.app) as upstream:
        fleet.wait_ready(replica(fleet, 0, upstream.url, fake.api_key))
        # the ack of a publish on another subject of the stream, stored on acme's task's result subject
        await nc.publish(
            subjects.scoped(subjects.TASK_FEEDBACK, "acme"),
            b"{}",
            reply=subjects.result_subject("acme", "planted-1"),
        )
        await nc.flush()
        planted = await nc.jetstream().get_last_msg(
            subjects.STREAM_EVENTS, subjects.result_subject_of_token(token, "planted-1")
        )
        assert b'"seq"' in (planted.data or b"")  # the ack, stored as the task's "result"
        sub = await nc.subscribe(subjects.result_subject("acme", "planted-1"))
        await publisher.publish(routed("planted-1", age_s=0), tenant_id="acme", event_subject="planted-1")
        answer = await sub.next_msg(timeout=30)
    _, payload = decode(answer.data)
    assert getattr(payload, "tenant_id", None) == "acme"
    assert fake.scenarios.calls["slow-0.1"] == 1  # run
