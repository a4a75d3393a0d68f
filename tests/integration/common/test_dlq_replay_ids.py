"""A dead letter's replay cannot be pre-empted by another bus user, on a real nats-server with `switchyard
up`'s permissions and an integrator scoped to acme. The replay's `Nats-Msg-Id` was `replay-of-<the event's
sequence>`: the integrator learns the events stream's sequence from its own publishes' acks, and a message
of its own on its tenant's subject under that id, within the server's duplicate window, had the replay
dropped as a duplicate while the dead letter was deleted: globex's result (a charge, a ledger entry) gone
for good."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import orjson
import pytest

from switchyard.cli.bus_permissions import Integrator
from switchyard.common import bus, dlq, subjects
from switchyard.common.envelope import encode
from switchyard.common.events import AdminActionRecorded, TaskFailed
from tests.support.guarded_bus import GuardedBus, scoped_guarded_bus

pytestmark = pytest.mark.integration

SCOPED = Integrator("integrator", ("acme",))


@pytest.fixture
def scoped_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedBus]:
    yield from scoped_guarded_bus(tmp_path, monkeypatch, SCOPED)


async def test_a_replay_is_not_dropped_for_a_message_another_user_published_under_its_id(
    scoped_bus: GuardedBus,
) -> None:
    operator = await nats.connect(scoped_bus.operator_url)
    executor = await scoped_bus.connect("executor")
    integrator = await scoped_bus.connect(SCOPED.user)
    try:
        js = operator.jetstream()
        theirs = TaskFailed(
            task_id="t-globex",
            tenant_id="globex",
            error_code="x",
            error_message="m",
            failed_at=datetime.now(UTC),
        )
        subject = subjects.result_subject("globex", "t-globex")
        await bus.EventPublisher(executor.jetstream(), source="executor").publish(
            theirs, subject=subject, tenant_id="globex"
        )
        stored = await js.get_last_msg(subjects.STREAM_EVENTS, subject)
        # billing could not handle it: dead-lettered
        await bus.dead_letter_stored(
            bus.EventPublisher(js, source="billing"),
            service="billing",
            consumer="billing",
            subject=subject,
            data=stored.data or b"",
            seq=stored.seq,
            deliveries=50,
            reason="handler failed",
            code="handler_error",
        )
        [letter] = [x async for x in dlq.scan(js, service="billing")]

        # the integrator, on its own tenant's subject, under the id the replay would take
        ack = await integrator.jetstream().publish(
            subjects.scoped(subjects.TASK_SUBMITTED, "acme"),
            orjson.dumps({"specversion": "1.0", "id": "x", "source": "urn:x", "type": "t"}),
            headers={"Nats-Msg-Id": f"replay-of-{stored.seq}"},
        )
        assert not ack.duplicate

        replayed = await dlq.replay(js, letter.seq)
        assert replayed.published
        info = await js.stream_info(subjects.STREAM_EVENTS, subjects_filter=subject)
        assert info.state.subjects == {subject: 2}  # the result stored again, for billing to charge
    finally:
        await integrator.close()
        await executor.close()
        await operator.close()


async def test_a_dead_letter_that_is_not_its_stored_event_is_not_replayed(scoped_bus: GuardedBus) -> None:
    """The executor's user may file any service's dead letters (the stranded sweep's), and a dead letter says
    its own original subject: one it forged for billing, an `organization.erased` of globex said to come
    from `switchyard.admin.action`, was published there by the operator's `dlq replay` (who may publish
    anything), though only the gateway may send an erasure. A replay now sends only the bytes the events
    stream holds at the letter's sequence, on that subject; a letter whose event is gone is replayed only
    when asked (`unchecked`)."""
    operator = await nats.connect(scoped_bus.operator_url)
    executor = await scoped_bus.connect("executor")
    try:
        js = operator.jetstream()
        real = TaskFailed(
            task_id="t-real", tenant_id="acme", error_code="x", error_message="m", failed_at=datetime.now(UTC)
        )
        forger = bus.EventPublisher(executor.jetstream(), source="executor")
        await forger.publish(real, subject=subjects.result_subject("acme", "t-real"), tenant_id="acme")
        seq = (await js.stream_info(subjects.STREAM_EVENTS)).state.last_seq
        erasure = AdminActionRecorded(
            action="organization.erased",
            tenant_id="globex",
            target_type="organization",
            target_id="globex",
            at=datetime.now(UTC),
        )
        _, body = encode(erasure, source="switchyard/gateway", tenant_id="globex")
        for claimed in (seq, 0, seq + 1000):  # a real event's sequence, none, one the stream never held
            await bus.dead_letter_stored(
                forger,
                service="billing",
                consumer="billing-erasure",
                subject=subjects.ADMIN_ACTION,
                data=body,
                seq=claimed,
                deliveries=50,
                reason="handler failed",
                code="handler_error",
            )
        letters = [x async for x in dlq.scan(js, service="billing")]
        assert len(letters) == 3
        for letter in letters:
            with pytest.raises(dlq.DeadLetterNotFound):
                await dlq.replay(js, letter.seq)
        info = await js.stream_info(subjects.STREAM_EVENTS, subjects_filter=subjects.ADMIN_ACTION)
        assert not info.state.subjects  # no erasure published
        assert len([x async for x in dlq.scan(js, service="billing")]) == 3  # kept, for an operator to read
    finally:
        await executor.close()
        await operator.close()
