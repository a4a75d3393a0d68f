"""A rating is kept only on a task whose stored result names its organisation and task: what the events
stream keeps on the task's result subject may be a publish's ack that a tenant-scoped integrator had the
server send there (NATS checks no reply subject), not a result. On a real nats-server with `switchyard
up`'s permissions, the integrator scoped to acme; the audit service as its own user."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client

from switchyard.cli.bus_permissions import Integrator
from switchyard.common import bus, subjects
from switchyard.common.envelope import encode
from switchyard.common.events import TaskFeedback
from tests.integration.audit.test_feedback_checked import _answer, _letters, _rated, running_audit
from tests.support.guarded_bus import GuardedBus, scoped_guarded_bus

pytestmark = pytest.mark.integration

SCOPED = Integrator("integrator", ("acme",))


@pytest.fixture
def scoped_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedBus]:
    yield from scoped_guarded_bus(tmp_path, monkeypatch, SCOPED)


@pytest.fixture
def audit_log(scoped_bus: GuardedBus, sqlite_url: str, tmp_path: Path) -> Iterator[Path]:
    yield from running_audit(scoped_bus, sqlite_url, tmp_path)


async def _plant_ack(integrator: Client, result_subject: str, msg_id: str) -> None:
    """What any bus user can do: have the server's ack of its own publish (here of a bad task on its
    tenant's subject) sent, and so stored, on a task's result subject."""
    event = {"specversion": "1.0", "id": "bait", "source": "urn:t", "type": "switchyard.task.submitted.v1"}
    await integrator.publish(
        subjects.scoped(subjects.TASK_SUBMITTED, "acme"),
        orjson.dumps(event),
        reply=result_subject,
        headers={"Nats-Msg-Id": msg_id},
    )


async def test_a_rating_of_a_task_whose_subject_holds_an_ack_is_not_kept(
    scoped_bus: GuardedBus, audit_log: Path, sqlite_url: str
) -> None:
    integrator = await scoped_bus.connect(SCOPED.user)
    executor, operator = await scoped_bus.connect("executor"), await scoped_bus.connect("operator")
    try:
        answers = bus.EventPublisher(executor.jetstream(), source="switchyard/executor")
        await answers.publish(_answer("real-1", "acme"), subject=subjects.result_subject("acme", "real-1"))
        # a task of no run: the server's ack of the integrator's own publish, stored on its result subject
        await _plant_ack(integrator, subjects.result_subject("acme", "ghost-1"), "ack-bait")
        for task_id in ("ghost-1", "real-1"):
            rating = TaskFeedback(task_id=task_id, tenant_id="acme", rating="good", at=datetime.now(UTC))
            _, body = encode(rating, source="integrator", tenant_id="acme", subject=task_id)
            await integrator.publish(subjects.scoped(subjects.TASK_FEEDBACK, "acme"), body)
        await integrator.flush()

        assert await _rated(sqlite_url, 1) == [("acme", "task/real-1")]
        # (the bait, no event, is dead-lettered as such: invalid_event)
        letters = [x for x in await _letters(operator, 2) if x.code == "task_not_found"]
        assert len(letters) == 1 and "'ghost-1'" in letters[0].reason, letters
        await asyncio.sleep(0.5)  # a second rating kept would show by now
        assert await _rated(sqlite_url, 2, timeout=0.3) == [("acme", "task/real-1")]
    finally:
        for nc in (integrator, executor, operator):
            await nc.close()
    scoped_bus.assert_clean(audit_log)


async def test_a_rating_of_a_finished_task_is_kept_though_an_ack_was_stored_after_its_result(
    scoped_bus: GuardedBus, audit_log: Path, sqlite_url: str
) -> None:
    """The last message on the result subject is no longer the task's result once a bus user had an ack
    stored there after it; the result is still kept, and the task still finished: its rating is kept."""
    integrator = await scoped_bus.connect(SCOPED.user)
    executor, operator = await scoped_bus.connect("executor"), await scoped_bus.connect("operator")
    try:
        answers = bus.EventPublisher(executor.jetstream(), source="switchyard/executor")
        await answers.publish(_answer("real-2", "acme"), subject=subjects.result_subject("acme", "real-2"))
        await _plant_ack(integrator, subjects.result_subject("acme", "real-2"), "ack-bait-2")
        await integrator.flush()
        await asyncio.sleep(0.3)  # the ack stored after the result
        rating = TaskFeedback(task_id="real-2", tenant_id="acme", rating="good", at=datetime.now(UTC))
        _, body = encode(rating, source="integrator", tenant_id="acme", subject="real-2")
        await integrator.publish(subjects.scoped(subjects.TASK_FEEDBACK, "acme"), body)
        await integrator.flush()

        assert await _rated(sqlite_url, 1) == [("acme", "task/real-2")]
        letters = [x for x in await _letters(operator, 1, timeout=0.5) if x.code == "task_not_found"]
        assert letters == []
    finally:
        for nc in (integrator, executor, operator):
            await nc.close()
    scoped_bus.assert_clean(audit_log)
