"""The ids the services derive for a task's events (classified, routed, result, usage...) are scoped to
the task's tenant: two organisations' systems that both name their task `job-1` (CloudEvent id and task
id), each on its own scoped subject, each get their task classified, routed, answered on their own result
subject, charged and ledgered. Before, the ids derived from `job-1` were the same for both, and the
events stream dropped the second organisation's events as duplicates (within its 2-minute window): its
task was never routed nor answered. On the real stack (`switchyard up`'s permissions: the dev
organisation's `integrator`, and `operator` for the second organisation)."""

from __future__ import annotations

import sqlite3
import uuid

import nats
import orjson
import pytest

from switchyard.common import ids
from tests.e2e.conftest import RunningStack, tenant_token, wait_for
from tests.e2e.test_bus_contract import _dev_organisation, _integrator, _task_event

pytestmark = pytest.mark.e2e


async def test_two_organisations_tasks_with_the_same_ids_are_both_run_charged_and_ledgered(
    stack: RunningStack, bus_tenant: str
) -> None:
    dev = _dev_organisation(stack)
    task_id = f"job-{uuid.uuid4().hex[:8]}"  # the same task id and CloudEvent id for both organisations
    event_id = f"ext-{task_id}"
    operator = await nats.connect(stack.nats_url)
    try:
        theirs = await operator.subscribe(f"switchyard.result.{tenant_token(bus_tenant)}.{task_id}")
        async with _integrator(stack) as (nc, denied):
            mine = await nc.subscribe(f"switchyard.result.{tenant_token(dev)}.{task_id}")
            first = _task_event(dev, task_id)
            assert first["id"] == event_id
            await nc.jetstream().publish(
                f"switchyard.task.submitted.{tenant_token(dev)}",
                orjson.dumps(first),
                headers={"Nats-Msg-Id": event_id},
            )
            answer = orjson.loads((await mine.next_msg(timeout=120)).data)
            assert not denied, denied
        assert answer["type"] == "switchyard.task.completed.v1", answer["data"].get("error_code")
        assert answer["tenantid"] == dev
        second = _task_event(bus_tenant, task_id)
        assert second["id"] == event_id
        # its own Nats-Msg-Id: one naming the same id as the first organisation's is dropped by the stream
        # as a duplicate (its ack says so: README, "The bus contract")
        ack = await operator.jetstream().publish(
            f"switchyard.task.submitted.{tenant_token(bus_tenant)}",
            orjson.dumps(second),
            headers={"Nats-Msg-Id": f"{bus_tenant}/{event_id}"},
        )
        assert not ack.duplicate
        try:
            theirs_answer = orjson.loads((await theirs.next_msg(timeout=60)).data)
        except nats.errors.TimeoutError:
            pytest.fail(f"the second organisation's task was never answered: {_ledgered(stack, task_id)}")
        assert theirs_answer["type"] == "switchyard.task.completed.v1", theirs_answer["data"]
        assert theirs_answer["tenantid"] == bus_tenant and theirs_answer["data"]["task_id"] == task_id
        assert theirs_answer["id"] != answer["id"]
    finally:
        await operator.close()
    steps = {"task.classify", "task.route", "task.complete", "billing.usage"}
    for tenant in (dev, bus_tenant):
        wait_for(lambda t=tenant: steps <= _ledgered(stack, task_id).get(t, set()), timeout=60)  # type: ignore[misc]
        assert _charged(stack, tenant, task_id) == 1


def _ledgered(stack: RunningStack, task_id: str) -> dict[str, set[str]]:
    """The ledger's actions on `task_id`, by tenant."""
    con = sqlite3.connect(stack.var_dir / "switchyard.db")
    try:
        rows = con.execute(
            "SELECT tenant_id, action FROM ledger_entries WHERE resource = ?", (f"task/{task_id}",)
        ).fetchall()
    finally:
        con.close()
    found: dict[str, set[str]] = {}
    for tenant, action in rows:
        found.setdefault(tenant, set()).add(action)
    return found


def _charged(stack: RunningStack, tenant_id: str, task_id: str) -> int:
    con = sqlite3.connect(stack.var_dir / "switchyard.db")
    try:
        (count,) = con.execute(
            "SELECT COUNT(*) FROM usage_entries WHERE tenant_id = ? AND task_id = ?", (tenant_id, task_id)
        ).fetchone()
    finally:
        con.close()
    return int(count)


async def test_a_submission_under_another_organisations_msg_id_is_acked_as_a_duplicate(
    stack: RunningStack, bus_tenant: str
) -> None:
    """What the README's bus contract says of `Nats-Msg-Id`: the stream de-duplicates by it across every
    organisation, and a publish ack with `duplicate: true` means the event was NOT stored (the stream
    holds another with that id): ids must be unique across organisations (a UUID)."""
    dev = _dev_organisation(stack)
    task_id = f"job-{uuid.uuid4().hex[:8]}"
    operator = await nats.connect(stack.nats_url)
    try:
        acks = []
        for tenant in (dev, bus_tenant):
            acks.append(
                await operator.jetstream().publish(
                    f"switchyard.task.submitted.{tenant_token(tenant)}",
                    orjson.dumps(_task_event(tenant, task_id)),
                    headers={"Nats-Msg-Id": f"ext-{task_id}"},
                )
            )
        assert [bool(a.duplicate) for a in acks] == [False, True]
        assert acks[1].seq == acks[0].seq  # the ack names the first organisation's message, not a new one
    finally:
        await operator.close()


async def test_an_integrator_cannot_take_its_tasks_event_ids_first(
    stack: RunningStack, bus_tenant: str
) -> None:
    """The dev organisation's `integrator` knows its task's event id, and publishes first, on the one
    subject of the events stream it may (its tenant's `task.feedback.<token>`), under every id it can
    work out for the events its task will cause (derived without the deployment's secret, which it does
    not have: unscoped, and scoped to its tenant). Its task is still classified, routed, answered,
    charged and ledgered. Before, the ids were `uuid5(cause:step)`: the stream dropped the classifier's
    event as a duplicate of the integrator's message, and the task was never routed nor answered (nor
    charged). The secret itself is in no service's log."""
    dev = _dev_organisation(stack)
    task_id = f"job-{uuid.uuid4().hex[:8]}"
    event = _task_event(dev, task_id)
    feedback = f"switchyard.task.feedback.{tenant_token(dev)}"
    async with _integrator(stack) as (nc, denied):
        js = nc.jetstream()
        for derive in (ids.derived_id, lambda cause, step: ids.derived_id(f"{dev}\n{cause}", step)):
            classified = derive(str(event["id"]), "classified")
            routed = derive(classified, "routed")
            result = derive(routed, "result")
            for guessed in (classified, routed, result, derive(result, "usage")):
                ack = await js.publish(feedback, b"{}", headers={"Nats-Msg-Id": guessed})
                assert not ack.duplicate
        results = await nc.subscribe(f"switchyard.result.{tenant_token(dev)}.{task_id}")
        await js.publish(
            f"switchyard.task.submitted.{tenant_token(dev)}",
            orjson.dumps(event),
            headers={"Nats-Msg-Id": str(event["id"])},
        )
        try:
            answer = orjson.loads((await results.next_msg(timeout=60)).data)
        except nats.errors.TimeoutError:
            pytest.fail(f"the task was never answered: {_ledgered(stack, task_id)}")
        assert not denied, denied
    assert answer["type"] == "switchyard.task.completed.v1", answer["data"]
    steps = {"task.classify", "task.route", "task.complete", "billing.usage"}
    wait_for(lambda: steps <= _ledgered(stack, task_id).get(dev, set()), timeout=60)
    assert _charged(stack, dev, task_id) == 1
    secret = (stack.var_dir / "event-id.key").read_text().strip()
    assert (stack.var_dir / "event-id.key").stat().st_mode & 0o777 == 0o600
    for log in (stack.var_dir / "logs").glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log.name
