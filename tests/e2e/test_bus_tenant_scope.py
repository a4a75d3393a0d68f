"""make run's `integrator` is scoped to its dev organisation (README, "The bus contract": Trust), on the
real nats-server with the generated permissions and the real services: it may act for that tenant only,
on `switchyard.task.<submitted|cancelled|feedback>.<token>`, and hear only that tenant's results and
chunks. Before, it published on the bare subjects for any tenant it named and heard every tenant's answers.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import nats
import orjson
import pytest

from tests.e2e.conftest import RunningStack, tenant_token
from tests.e2e.test_bus_contract import _dev_organisation, _integrator, _task_event

pytestmark = pytest.mark.e2e


async def test_the_integrator_may_not_act_for_or_hear_another_tenant(
    stack: RunningStack, bus_tenant: str
) -> None:
    other = tenant_token(bus_tenant)
    async with _integrator(stack) as (nc, denied):
        task_id = uuid.uuid4().hex
        body = orjson.dumps(_task_event(bus_tenant, task_id))
        refused_publishes = [
            f"switchyard.task.{kind}.{other}" for kind in ("submitted", "cancelled", "feedback")
        ]
        refused_publishes += [
            "switchyard.task.submitted",
            "switchyard.task.cancelled",
            "switchyard.task.feedback",
        ]
        for subject in refused_publishes:
            await nc.publish(subject, body)
        refused_subscriptions = [f"switchyard.result.{other}.{task_id}", f"switchyard.chunk.{other}.*"]
        refused_subscriptions += ["switchyard.result.>", f"switchyard.result.*.{task_id}"]
        for subject in refused_subscriptions:
            await nc.subscribe(subject)
        await nc.flush()
        await asyncio.sleep(0.5)
    joined = "\n".join(denied).lower()
    for subject in refused_publishes:
        assert f'permissions violation for publish to "{subject}"' in joined, joined
    for subject in refused_subscriptions:
        assert f'permissions violation for subscription to "{subject}"' in joined, joined


async def test_a_submission_naming_another_tenant_is_answered_to_its_sender_and_never_run(
    stack: RunningStack, bus_tenant: str
) -> None:
    """On the dev organisation's subject, a task whose payload names another organisation: dead-lettered
    `tenant_mismatch` (by the classifier and the ledger), answered `task.failed` on the dev organisation's
    result subject, never classified, run or billed; the named organisation hears nothing."""
    dev = _dev_organisation(stack)
    operator = await nats.connect(stack.nats_url)
    try:
        task_id = uuid.uuid4().hex
        theirs = await operator.subscribe(f"switchyard.result.{tenant_token(bus_tenant)}.{task_id}")
        async with _integrator(stack) as (nc, denied):
            mine = await nc.subscribe(f"switchyard.result.{tenant_token(dev)}.{task_id}")
            event = _task_event(bus_tenant, task_id)
            ack = await nc.jetstream().publish(
                f"switchyard.task.submitted.{tenant_token(dev)}",
                orjson.dumps(event),
                headers={"Nats-Msg-Id": str(event["id"])},
            )
            answer = orjson.loads((await mine.next_msg(timeout=60)).data)
            assert not denied, denied
        assert answer["type"] == "switchyard.task.failed.v1", answer
        assert answer["tenantid"] == dev and answer["data"]["tenant_id"] == dev
        assert answer["data"]["task_id"] == task_id and answer["data"]["error_code"] == "tenant_mismatch"
        letters = await _dead_letters(operator, ack.seq, {"classifier", "audit"})
        assert {h["Switchyard-Dlq-Code"] for h in letters.values()} == {"tenant_mismatch"}
        with pytest.raises(nats.errors.TimeoutError):
            await theirs.next_msg(timeout=1)
        assert (
            await _events_naming(
                operator, task_id, ("switchyard.task.classified", "switchyard.billing.usage")
            )
            == []
        )
    finally:
        await operator.close()


async def test_a_cancellation_naming_another_tenants_task_does_not_cancel_it(
    stack: RunningStack, bus_tenant: str
) -> None:
    """The other organisation's long task runs while the integrator cancels it on the dev subject, once
    naming its tenant (refused: `tenant_mismatch`) and once naming the dev organisation with its task id
    (another tenant's task): it completes."""
    dev = _dev_organisation(stack)
    operator = await nats.connect(stack.nats_url)
    try:
        task_id = uuid.uuid4().hex
        results = await operator.subscribe(f"switchyard.result.{tenant_token(bus_tenant)}.{task_id}")
        routed = asyncio.Event()

        async def on_routed(msg: nats.aio.msg.Msg) -> None:
            if orjson.loads(msg.data)["data"]["task"]["task_id"] == task_id:
                routed.set()

        await operator.subscribe("switchyard.task.routed", cb=on_routed)
        event = _task_event(bus_tenant, task_id)
        event["data"]["request"].update(  # type: ignore[index]
            messages=[
                {"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}
            ],
            max_tokens=400,
        )
        js = operator.jetstream()
        await js.publish(
            "switchyard.task.submitted", orjson.dumps(event), headers={"Nats-Msg-Id": str(event["id"])}
        )
        await asyncio.wait_for(routed.wait(), 60)
        acks = []
        async with _integrator(stack) as (nc, denied):
            for named in (bus_tenant, dev):
                cancel = {
                    "specversion": "1.0",
                    "id": f"ext-cancel-{named}-{task_id}",
                    "source": "urn:example:batch-system",
                    "type": "switchyard.task.cancelled.v1",
                    "tenantid": named,
                    "data": {
                        "task_id": task_id,
                        "tenant_id": named,
                        "cancelled_at": datetime.now(UTC).isoformat(),
                    },
                }
                acks.append(
                    await nc.jetstream().publish(
                        f"switchyard.task.cancelled.{tenant_token(dev)}",
                        orjson.dumps(cancel),
                        headers={"Nats-Msg-Id": cancel["id"]},
                    )
                )
            assert not denied, denied
        await _dead_letters(operator, acks[0].seq, {"audit"})  # the mismatch was read, and refused
        result = orjson.loads((await results.next_msg(timeout=120)).data)
        assert result["type"] == "switchyard.task.completed.v1", result["data"].get("error_code")
    finally:
        await operator.close()


async def _dead_letters(nc: nats.NATS, seq: int, services: set[str]) -> dict[str, dict[str, str]]:
    """The dead letters of the events stream's message `seq`, by service, once `services` made theirs."""
    js = nc.jetstream()
    found: dict[str, dict[str, str]] = {}
    for _ in range(150):
        info = await js.stream_info("SWITCHYARD_DLQ")
        for n in range(max(1, info.state.first_seq), info.state.last_seq + 1):
            try:
                m = await js.get_msg("SWITCHYARD_DLQ", n)
            except nats.js.errors.NotFoundError:
                continue
            if m.headers and m.headers.get("Switchyard-Dlq-Stream-Seq") == str(seq):
                found[m.headers["Switchyard-Dlq-Service"]] = m.headers
        if services <= found.keys():
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"dead letters of {seq}: {sorted(found)}, not {sorted(services)}")


async def _events_naming(nc: nats.NATS, task_id: str, subjects: tuple[str, ...]) -> list[str]:
    """The stored events on `subjects` whose data names `task_id` (its task's or its own)."""
    found = []
    for subject in subjects:
        sub = await nc.jetstream().subscribe(subject, ordered_consumer=True)
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                break
            data = orjson.loads(msg.data).get("data", {})
            if task_id in (data.get("task_id"), data.get("task", {}).get("task_id")):
                found.append(subject)
        await sub.unsubscribe()
    return found
