"""Another system on the bus: it submits a task as a hand-written CloudEvent with plain nats-py (none of
our code) and receives the result as an event; bad events land in the dead-letter stream."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import nats
import orjson
import pytest

from tests.e2e.conftest import RunningStack, tenant_token

pytestmark = pytest.mark.e2e


def _task_event(tenant: str, task_id: str) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"ext-{task_id}",
        "source": "urn:example:batch-system",
        "type": "switchyard.task.submitted.v1",
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "tenantid": tenant,
        "data": {
            "task_id": task_id,
            "tenant_id": tenant,
            "request": {
                "model": "auto",
                "messages": [{"role": "user", "content": "Name the largest planet in the solar system."}],
                "max_tokens": 24,
            },
            "priority": "low",
            "submitted_at": datetime.now(UTC).isoformat(),
        },
    }


async def test_submit_on_the_bus_and_receive_the_result(stack: RunningStack, bus_tenant: str) -> None:
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    task_id = uuid.uuid4().hex
    results: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_result(msg: nats.aio.msg.Msg) -> None:
        await results.put(msg.data)

    await nc.subscribe(f"switchyard.result.{tenant_token(bus_tenant)}.{task_id}", cb=on_result)
    event = _task_event(bus_tenant, task_id)
    trace_id = uuid.uuid4().hex
    event["traceparent"] = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"  # the other system's trace
    body = orjson.dumps(event)
    ack = await js.publish("switchyard.task.submitted", body, headers={"Nats-Msg-Id": str(event["id"])})
    assert ack.stream == "SWITCHYARD"
    again = await js.publish("switchyard.task.submitted", body, headers={"Nats-Msg-Id": str(event["id"])})
    assert again.duplicate, "a retried publish with the same id is de-duplicated by the server"

    result = orjson.loads(await asyncio.wait_for(results.get(), 120))
    assert result["type"] == "switchyard.task.completed.v1"
    assert result["specversion"] == "1.0" and result["tenantid"] == bus_tenant
    assert result["data"]["task_id"] == task_id
    assert result["data"]["content"].strip()
    assert result["data"]["usage"]["completion_tokens"] > 0
    assert result["traceparent"].split("-")[1] == trace_id  # the result joins the caller's trace
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(results.get(), 3)  # exactly one result
    await nc.close()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc3\x28 not utf-8", "not valid JSON"),
        (
            b'{"specversion":"1.0","id":"x1","source":"s","type":"switchyard.task.submitted.v1","data":{"task_id":"t"}}',
            "invalid switchyard.task.submitted.v1 payload",
        ),
        (b"A" * 2_000_000, "not valid JSON"),
        # 5 MB that parses, as no event: the envelope's own cap (8 MiB) is the bus's max_payload, so an
        # event over it never arrives by the bus (tests/unit/common/test_envelope.py checks the cap)
        (b"{" + b" " * 5_000_000 + b"}", "not a CloudEvents 1.0 structured event"),
    ],
)
async def test_invalid_events_go_to_the_dead_letter_stream(
    stack: RunningStack, payload: bytes, reason: str
) -> None:
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    msg_id = uuid.uuid4().hex
    ack = await js.publish("switchyard.task.submitted", payload, headers={"Nats-Msg-Id": msg_id})

    async def dead_letters() -> dict[str, dict[str, str]]:
        """Every consumer of the subject dead-letters it once: service -> headers."""
        found: dict[str, dict[str, str]] = {}
        info = await js.stream_info("SWITCHYARD_DLQ")
        for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
            m = await js.get_msg("SWITCHYARD_DLQ", seq)
            if m.headers and m.headers.get("Switchyard-Dlq-Stream-Seq") == str(ack.seq):
                assert m.data == payload, "the dead letter keeps the original bytes"
                found[m.headers["Switchyard-Dlq-Service"]] = m.headers
        return found

    found: dict[str, dict[str, str]] = {}
    for _ in range(100):
        found = await dead_letters()
        if {"classifier", "audit"} <= found.keys():
            break
        await asyncio.sleep(0.1)
    assert sorted(found) == ["audit", "classifier"], "each consumer of the subject dead-letters it, once"
    for headers in found.values():
        assert reason in headers["Switchyard-Dlq-Reason"]
        assert headers["Switchyard-Dlq-Code"] == "invalid_event"
    await nc.close()
    async with httpx.AsyncClient() as c:
        ready = await c.get(f"{stack.base_url}/readyz", params={"strict": "true"})
    assert ready.status_code == 200, "every service is still running"


async def test_another_system_cancels_its_task_on_the_bus(stack: RunningStack, bus_tenant: str) -> None:
    """A hand-written `switchyard.task.cancelled.v1`, sent as soon as the task is routed, stops the task
    (or skips it, if no executor has started it yet): its result is `task.failed` with `task_cancelled`,
    not the long answer the local model would take seconds to write."""
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    task_id = uuid.uuid4().hex
    results: asyncio.Queue[bytes] = asyncio.Queue()
    routed = asyncio.Event()

    async def on_result(msg: nats.aio.msg.Msg) -> None:
        await results.put(msg.data)

    async def on_routed(msg: nats.aio.msg.Msg) -> None:
        if orjson.loads(msg.data)["data"]["task"]["task_id"] == task_id:
            routed.set()

    await nc.subscribe(f"switchyard.result.{tenant_token(bus_tenant)}.{task_id}", cb=on_result)
    await nc.subscribe("switchyard.task.routed", cb=on_routed)
    event = _task_event(bus_tenant, task_id)
    event["data"]["request"].update(  # type: ignore[index]
        messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}],
        max_tokens=400,
    )
    await js.publish(
        "switchyard.task.submitted", orjson.dumps(event), headers={"Nats-Msg-Id": str(event["id"])}
    )
    await asyncio.wait_for(routed.wait(), 60)
    cancel = {
        "specversion": "1.0",
        "id": f"ext-cancel-{task_id}",
        "source": "urn:example:batch-system",
        "type": "switchyard.task.cancelled.v1",
        "datacontenttype": "application/json",
        "tenantid": bus_tenant,
        "data": {
            "task_id": task_id,
            "tenant_id": bus_tenant,
            "cancelled_at": datetime.now(UTC).isoformat(),
        },
    }
    await js.publish("switchyard.task.cancelled", orjson.dumps(cancel), headers={"Nats-Msg-Id": cancel["id"]})
    result = orjson.loads(await asyncio.wait_for(results.get(), 120))
    assert result["type"] == "switchyard.task.failed.v1", result["type"]
    assert result["data"]["error_code"] == "task_cancelled"
    await nc.close()


async def test_a_task_the_pipeline_cannot_read_is_answered_with_its_reason(
    stack: RunningStack, bus_tenant: str
) -> None:
    """Another system's task with a mistake in it (here: `messages` misspelt) names its task and tenant:
    its submitter hears `switchyard.task.failed.v1` with the reason at once, instead of waiting for a result
    that never comes, and the event is still a dead letter."""
    nc = await nats.connect(stack.nats_url)
    task_id = uuid.uuid4().hex
    results = await nc.subscribe(f"switchyard.result.{tenant_token(bus_tenant)}.{task_id}")
    event = _task_event(bus_tenant, task_id)
    request = event["data"]["request"]  # type: ignore[index]
    request["mesages"] = request.pop("messages")
    await nc.jetstream().publish(
        "switchyard.task.submitted", orjson.dumps(event), headers={"Nats-Msg-Id": str(event["id"])}
    )
    result = orjson.loads((await results.next_msg(timeout=30)).data)
    assert result["type"] == "switchyard.task.failed.v1" and result["tenantid"] == bus_tenant
    assert result["data"]["task_id"] == task_id and result["data"]["error_code"] == "invalid_event"
    assert "messages" in result["data"]["error_message"]
    with pytest.raises(nats.errors.TimeoutError):
        await results.next_msg(timeout=2)  # one answer
    await nc.close()


async def test_a_task_of_no_organisation_is_refused_and_the_default_organisation_runs(
    stack: RunningStack,
) -> None:
    """make run's gateway keeps the tenant registry: a task whose `tenant_id` no organisation has (a typo,
    an erased one) is answered `unknown_tenant` at once and run nowhere; one of the embedded default
    organisation (`dev`, whose id the admin API gives) runs."""
    async with httpx.AsyncClient(base_url=stack.base_url) as c:
        org = await c.get("/v1/admin/organization", headers={"Authorization": f"Bearer {stack.api_key}"})
    dev = org.json()["id"]
    nc = await nats.connect(stack.nats_url)
    outcomes: dict[str, dict[str, object]] = {}
    for tenant in ("no-such-org", dev):
        task_id = uuid.uuid4().hex
        results = await nc.subscribe(f"switchyard.result.{tenant_token(tenant)}.{task_id}")
        event = _task_event(tenant, task_id)
        await nc.jetstream().publish(
            "switchyard.task.submitted", orjson.dumps(event), headers={"Nats-Msg-Id": str(event["id"])}
        )
        outcomes[tenant] = orjson.loads((await results.next_msg(timeout=120)).data)
    await nc.close()
    refused = outcomes["no-such-org"]
    assert refused["type"] == "switchyard.task.failed.v1"
    assert refused["data"]["error_code"] == "unknown_tenant"  # type: ignore[index]
    assert outcomes[dev]["type"] == "switchyard.task.completed.v1"


async def test_another_system_logs_in_as_integrator_on_make_runs_bus(stack: RunningStack) -> None:
    """`make run` gives another system a user of its own (README, Trust): `integrator`, whose password is in
    var/nats-auth beside the others, scoped to the run's dev organisation. It submits on that tenant's
    subject and hears its result, and may not publish a result itself."""
    dev = _dev_organisation(stack)
    async with _integrator(stack) as (nc, denied):
        task_id = uuid.uuid4().hex
        results = await nc.subscribe(f"switchyard.result.{tenant_token(dev)}.{task_id}")
        event = _task_event(dev, task_id)
        ack = await nc.jetstream().publish(
            f"switchyard.task.submitted.{tenant_token(dev)}",
            orjson.dumps(event),
            headers={"Nats-Msg-Id": str(event["id"])},
        )
        assert ack.stream == "SWITCHYARD"
        result = orjson.loads((await results.next_msg(timeout=120)).data)
        assert result["type"] == "switchyard.task.completed.v1", result
        await nc.publish(f"switchyard.result.{tenant_token(dev)}.{task_id}", b"{}")  # a forged result
        await nc.flush()
        await asyncio.sleep(0.3)
        assert any("permissions violation for publish" in d.lower() for d in denied), denied


def _dev_organisation(stack: RunningStack) -> str:
    org = httpx.get(
        f"{stack.base_url}/v1/admin/organization",
        headers={"Authorization": f"Bearer {stack.api_key}"},
        timeout=30,
    )
    return str(org.json()["id"])


@contextlib.asynccontextmanager
async def _integrator(stack: RunningStack) -> AsyncIterator[tuple[nats.NATS, list[str]]]:
    """make run's `integrator` connected, and the permission violations its server reported."""
    password = (stack.var_dir / "nats-auth" / "integrator.password").read_text().strip()
    denied: list[str] = []

    async def on_error(exc: Exception) -> None:
        denied.append(str(exc))

    nc = await nats.connect(
        stack.bare_nats_url,
        user="integrator",
        password=password,
        inbox_prefix="_INBOX_integrator",
        error_cb=on_error,
    )
    try:
        yield nc, denied
    finally:
        await nc.close()
