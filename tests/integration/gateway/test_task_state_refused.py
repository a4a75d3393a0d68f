"""A task the gateway published is never reported as failed because its state could not be stored: with
the task bucket refusing every write (a real JetStream error: the bucket's stream takes no message larger
than 1 byte), POST /v1/tasks still answers 202, the task is found (by the replica that holds its state,
and by any replica from its result event once there), an Idempotency-Key retry still gets the same task,
and the state is stored once the bucket takes writes again. Two gateway processes, a real nats-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import ids, subjects
from switchyard.gateway.taskapi.models import TaskState
from switchyard.gateway.taskapi.store import TaskStore, tasks_bucket
from tests.integration.gateway.harness import Answerer, Org, auth, gateway_stack, make_org
from tests.integration.gateway.test_messages_and_tasks import BODY, _submitted_events

pytestmark = pytest.mark.integration
BUCKET_STREAM = f"KV_{subjects.KV_TASKS}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, list[str], Org]]:
    tmp = tmp_path_factory.mktemp("task-state")
    with gateway_stack(tmp, count=2) as (server, db_url, bases):
        org = asyncio.run(make_org(db_url, "acme", roles=("member",), plan="pro"))
        yield server, bases, org


@pytest.fixture
async def answerer(stack: tuple[NatsServer, list[str], Org]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0].url, hold=True)
    yield me
    await me.close()


async def _bucket_takes_writes(url: str, takes: bool, *, up_to_bytes: int = 1) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config = (await js.stream_info(BUCKET_STREAM)).config
        config.max_msg_size = -1 if takes else up_to_bytes
        await js.update_stream(config)
    finally:
        await nc.close()


async def _stored_state(url: str, task_id: str) -> bytes | None:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(subjects.KV_TASKS)
        try:
            return (await kv.get(task_id)).value
        except nats.js.errors.KeyNotFoundError:
            return None
    finally:
        await nc.close()


async def test_a_published_task_whose_state_is_refused_is_answered_and_found(
    stack: tuple[NatsServer, list[str], Org], answerer: Answerer
) -> None:
    server, (base, other), org = stack
    member = auth(org.keys["member"])
    keyed = {**member, "Idempotency-Key": "refused-1"}
    await _bucket_takes_writes(server.url, False)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c, httpx.AsyncClient(base_url=other) as o:
            plain = await c.post("/v1/tasks", json=BODY, headers=member)
            assert plain.status_code == 202, plain.text  # published: running, and charged; not a 503
            task = plain.json()
            assert task["status"] == "queued"
            assert (await c.get(f"/v1/tasks/{task['id']}", headers=member)).json() == task

            # With a key, the key is claimed in the bucket before anything is published (so that two
            # replicas agree on one body): refused, nothing was sent, and the client is told to retry.
            unclaimed = await c.post("/v1/tasks", json=BODY, headers=keyed)
            assert unclaimed.status_code == 503, unclaimed.text
            assert unclaimed.json()["error"]["code"] == "bus_unavailable"
            assert unclaimed.headers["x-should-retry"] == "true"

            await answerer.release()
            for client in (c, o):  # the holder from its own copy; the other replica from the result event
                done = await _until_done(client, f"/v1/tasks/{task['id']}", member)
                assert done["status"] == "completed" and done["result"]["content"] == "Paris"
                assert done["id"] == task["id"] and done["tenant_id"] == org.id
    finally:
        await _bucket_takes_writes(server.url, True)

    deadline = time.monotonic() + 20
    while await _stored_state(server.url, task["id"]) is None:
        assert time.monotonic() < deadline, "the task's state was never stored"
        await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=other) as o:
        read = (await o.get(f"/v1/tasks/{task['id']}", headers=member)).json()
        first = await o.post("/v1/tasks", json=BODY, headers=keyed)
        assert first.status_code == 202, first.text
        again = await o.post("/v1/tasks", json=BODY, headers=keyed)
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
        changed = await o.post("/v1/tasks", json={**BODY, "max_tokens": 7}, headers=keyed)
        assert changed.status_code == 409, changed.text
    assert read["status"] == "completed" and read["model"] == "auto"
    assert read["created_at"] == task["created_at"], (
        "the state the gateway kept, not one told from the result"
    )
    assert [t.task_id for t in answerer.seen].count(task["id"]) == 1
    assert await _submitted_events(server.url, task["id"]) == 1
    assert await _submitted_events(server.url, first.json()["id"]) == 1


async def _until_done(c: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while True:
        got = await c.get(url, headers=headers)
        if got.status_code == 200 and got.json()["status"] != "queued":
            return got.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, got.text
        await asyncio.sleep(0.1)


async def test_kept_states_are_written_newest_last_and_never_over_another_requests_task(
    stack: tuple[NatsServer, list[str], Org],
) -> None:
    server = stack[0]
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        kv = await tasks_bucket(js)
        store = TaskStore(kv, js, retry_s=0.3)
        now = datetime.now(UTC)
        # Ours are large, so the bucket refuses them and still takes the other replica's small one.
        mine, raced = (
            TaskState(
                id=ids.new_id(),
                tenant_id="t",
                status="queued",
                model="m" * 800,
                created_at=now,
                updated_at=now,
            )
            for _ in range(2)
        )
        theirs = raced.model_copy(update={"model": "auto", "created_at": now + timedelta(seconds=1)})
        await _bucket_takes_writes(server.url, False, up_to_bytes=600)
        try:
            assert await store.create(mine) and await store.create(raced)  # refused, kept: still True
            assert await store.get(mine.id) == mine
            cancelled = mine.model_copy(update={"status": "cancelled"})
            await store.put(cancelled)
            assert await store.get(mine.id) == cancelled
            # Another replica stores its own task under `raced`'s id (an Idempotency-Key retry) meanwhile.
            await kv.create(raced.id, theirs.model_dump_json().encode())
        finally:
            await _bucket_takes_writes(server.url, True)
        deadline = time.monotonic() + 10
        while await _stored_state(server.url, mine.id) is None or await store.get(raced.id) != theirs:
            assert time.monotonic() < deadline, "kept states were not written"
            await asyncio.sleep(0.1)
        stored = TaskState.model_validate_json(await _stored_state(server.url, mine.id) or b"")
        assert stored == cancelled, "the newest version, created (not put over another task)"
        assert TaskState.model_validate_json(await _stored_state(server.url, raced.id) or b"") == theirs
        await store.close()
    finally:
        await nc.close()
