"""`POST /v1/admin/organizations/{id}/erase` on a real gateway, nats-server and database (SQLite and
PostgreSQL): two organisations with files, a batch, a conversation, stored responses of both key layouts
and cached answers; the platform operator erases one: its keys stop working, none of its content is left
in any store, every item of the other is still served, and one ledger event says what was erased, in
counts. Only the platform operator may, never for its own organisation; a second run erases nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import pytest
from nats.js import JetStreamContext

from switchyard.cli.main import main
from switchyard.cli.processes import NatsServer
from switchyard.common import bus, envelope, kv, subjects, vectors
from switchyard.common.events import AdminActionRecorded, ChatRequest, TaskSubmitted
from switchyard.common.ids import new_id
from switchyard.gateway.batches.store import BatchStore
from switchyard.gateway.conversations.store import ConversationStore
from switchyard.gateway.files.store import tenant_part
from switchyard.gateway.stored_responses.store import ResponseStore, StoredResponse
from switchyard.gateway.taskapi.idempotency import claim_key
from switchyard.gateway.taskapi.models import Claim, TaskResult, TaskState, TaskUsage
from tests.integration.gateway.harness import Org, auth, gateways, make_org, stored_events

pytestmark = pytest.mark.integration
SECRET = "the customer's private words"
LINE = {
    "custom_id": "q",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "nope/none", "max_tokens": 8, "messages": [{"role": "user", "content": SECRET}]},
}


@dataclass
class Held:
    """What an organisation stored, by id."""

    org: Org
    file: str = ""
    batch: str = ""
    conversation: str = ""
    responses: list[str] = field(default_factory=list)


@pytest.fixture
def world(nats_server: NatsServer, tmp_path: Path, db_url: str) -> Iterator[tuple[str, Org, str]]:
    env = {"SWITCHYARD_CACHE_ENABLED": "true", "SWITCHYARD_CACHE_SEMANTIC": "false"}
    with gateways(nats_server, db_url, tmp_path, env=env) as (base,):
        yield base, asyncio.run(make_org(db_url, "operator", platform=True)), db_url


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.close()


async def _fill(c: httpx.AsyncClient, js: JetStreamContext, org: Org) -> Held:
    held = Held(org)
    key = auth(org.keys["member"])
    upload = await c.post(
        "/v1/files",
        files={"file": ("in.jsonl", json.dumps(LINE).encode() + b"\n")},
        data={"purpose": "batch"},
        headers=key,
    )
    assert upload.status_code == 200, upload.text
    held.file = upload.json()["id"]
    ask = {"input_file_id": held.file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    batch = await c.post("/v1/batches", json=ask, headers=key)
    assert batch.status_code == 200, batch.text
    held.batch = batch.json()["id"]
    items = [{"type": "message", "role": "user", "content": SECRET}]
    conversation = await c.post("/v1/conversations", json={"items": items}, headers=key)
    assert conversation.status_code == 200, conversation.text
    held.conversation = conversation.json()["id"]
    store = ResponseStore(await js.key_value(subjects.KV_RESPONSES), max_value_bytes=1 << 20)
    for n, old in ((1, False), (2, True)):  # one as this version writes it, one as the one before did
        record = StoredResponse(
            response={"id": f"resp_{org.name}{n}", "object": "response", "status": "completed", "output": []},
            input=[{"id": f"msg_{n}", "type": "message", "role": "user", "content": SECRET}],
        )
        if old:
            await store.bucket.put(kv.tenant_key(org.id, record.id), record.to_bytes())
        else:
            assert await store.put(org.id, record)
        held.responses.append(record.id)
    cache = await js.key_value(subjects.KV_CACHE)
    await cache.put(f"a.{kv.safe_key(org.id)}.{'ab' * 32}", SECRET.encode())
    # a task of it on the bus, as the pipeline saw it (its prompt), and its copy in the dead-letter stream
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": SECRET}]})
    task = TaskSubmitted(task_id=new_id(), tenant_id=org.id, request=request, submitted_at=datetime.now(UTC))
    events = bus.EventPublisher(js, source="test")
    await events.publish(task, tenant_id=org.id)
    _, body = envelope.encode(task, source="test", tenant_id=org.id)
    await events.publish_raw(subjects.dlq_subject("classifier"), body, msg_id=f"dlq-{task.task_id}")
    # a task API task's state with its answer (kept 7 days), and its Idempotency-Key claim
    now = datetime.now(UTC)
    answered = TaskState(
        id=task.task_id,
        tenant_id=org.id,
        status="completed",
        model="m",
        created_at=now,
        updated_at=now,
        idempotency_key="k1",
        result=TaskResult(
            model="m",
            tier="local",
            content="answer: " + SECRET,
            finish_reason="stop",
            usage=TaskUsage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
        ),
    )
    states = await js.key_value(subjects.KV_TASKS)
    await states.put(task.task_id, answered.model_dump_json().encode())
    claim = Claim(task_id=task.task_id, request_sha256="0" * 64, claimed_at=now)
    await states.put(claim_key(org.id, "k1"), claim.model_dump_json().encode())
    # an embedding batch line's vectors, as an executor stored them (3 days)
    vectors_store = await js.object_store(subjects.OBJ_BATCH_VECTORS)
    await vectors_store.put(vectors.object_name(org.id, task.task_id), b"\x00" * 1536)
    return held


async def _vectors_of(js: JetStreamContext, tenant_id: str) -> int:
    listed = await (await js.object_store(subjects.OBJ_BATCH_VECTORS)).list(ignore_deletes=True)
    return sum(1 for info in listed if info.name.startswith(f"{tenant_id}."))


async def _on_the_bus(js: JetStreamContext, tenant_id: str) -> int:
    """How many events of the streams hold the tenant's id and the secret prompt."""
    found = 0
    for stream in (subjects.STREAM_EVENTS, subjects.STREAM_DLQ):
        state = (await js.stream_info(stream)).state
        for seq in range(state.first_seq, state.last_seq + 1 if state.messages else 0):
            try:
                data = (await js.get_msg(stream, seq)).data or b""
            except nats.js.errors.NotFoundError:
                continue
            found += SECRET.encode() in data and tenant_id.encode() in data
    return found


async def test_the_operator_erases_one_organisation_and_only_it(
    world: tuple[str, Org, str], js: JetStreamContext, nats_server: NatsServer
) -> None:
    base, ops, db_url = world
    acme_org = await make_org(db_url, "acme", roles=("admin", "member"))
    globex_org = await make_org(db_url, "globex", roles=("admin", "member"))
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        acme, globex = await _fill(c, js, acme_org), await _fill(c, js, globex_org)
        on_the_bus = await _on_the_bus(js, globex_org.id)
        assert on_the_bus >= 2 and await _on_the_bus(js, acme_org.id) >= 2
        path = f"/v1/admin/organizations/{acme_org.id}/erase"
        not_operator = await c.post(path, headers=auth(acme_org.keys["admin"]))
        itself = await c.post(f"/v1/admin/organizations/{ops.id}/erase", headers=auth(ops.keys["admin"]))
        unknown = await c.post("/v1/admin/organizations/nope/erase", headers=auth(ops.keys["admin"]))
        erased = await c.post(path, headers=auth(ops.keys["admin"]))
        again = await c.post(path, headers=auth(ops.keys["admin"]))
        acme_after = await c.get("/v1/models", headers=auth(acme_org.keys["member"]))
        b = auth(globex_org.keys["member"])
        globex_reads = [
            (await c.get(p, headers=b)).status_code
            for p in (
                f"/v1/files/{globex.file}",
                f"/v1/files/{globex.file}/content",
                f"/v1/batches/{globex.batch}",
                f"/v1/conversations/{globex.conversation}",
                *(f"/v1/responses/{r}" for r in globex.responses),
            )
        ]

    assert (not_operator.status_code, not_operator.json()["error"]["code"]) == (
        403,
        "insufficient_permissions",
    )
    assert (itself.status_code, itself.json()["error"]["param"]) == (400, "org_id")
    assert unknown.status_code == 404
    assert erased.status_code == 200, erased.text
    counts = erased.json()
    assert counts["organization_id"] == acme_org.id
    assert (counts["keys_revoked"], counts["users_disabled"]) == (2, 2)
    assert (counts["stored_responses"], counts["conversations"], counts["batches"]) == (2, 1, 1)
    assert counts["files"] >= 1 and counts["cache_keys"] == 1 and counts["semantic_cache"] is False
    rerun = again.json()
    # what a second run still found, by name (a failure says which)
    assert {k: v for k, v in rerun.items() if k != "organization_id" and v not in (0, False)} == {}
    assert acme_after.status_code == 401
    assert globex_reads == [200] * 6

    # none of acme's content is left in any store; all of globex's is
    store = ResponseStore(await js.key_value(subjects.KV_RESPONSES), max_value_bytes=1 << 20)
    for response_id in acme.responses:
        assert await store.get(acme_org.id, response_id) is None
    assert await ConversationStore(store).get(acme_org.id, acme.conversation) is None
    batches = BatchStore(await js.key_value(subjects.KV_BATCHES))
    assert await batches.read(acme.batch) is None and await batches.read(globex.batch) is not None
    index = await js.key_value(subjects.KV_FILES)
    for org, left in ((acme_org, 0), (globex_org, 1)):
        live = [k for k in await kv.keys(index, f"{tenant_part(org.id)}.") if (await kv.read(index, k))[0]]
        assert len(live) >= left and (left or not live)
    assert counts["events_deleted"] >= 2 and counts["events_left"] == 0, counts
    assert await _on_the_bus(js, acme_org.id) == 0
    assert await _on_the_bus(js, globex_org.id) == on_the_bus
    assert counts["batch_vectors"] == 1 and await _vectors_of(js, acme_org.id) == 0
    assert await _vectors_of(js, globex_org.id) == 1
    assert counts["tasks"] == 1
    states = await js.key_value(subjects.KV_TASKS)
    for org in (acme_org, globex_org):
        left = [k for k in await kv.keys(states) if org.id.encode() in ((await kv.read(states, k))[0] or b"")]
        assert len(left) == (0 if org is acme_org else 1), left
    assert (await kv.read(states, claim_key(acme_org.id, "k1")))[0] is None
    assert (await kv.read(states, claim_key(globex_org.id, "k1")))[0] is not None
    cache = await js.key_value(subjects.KV_CACHE)
    assert await kv.keys(cache, f"a.{kv.safe_key(acme_org.id)}.") == []
    assert len(await kv.keys(cache, f"a.{kv.safe_key(globex_org.id)}.")) == 1

    # one ledger event per run, in counts: no content, no key
    events, raw = await stored_events(nats_server.url, subjects.ADMIN_ACTION, AdminActionRecorded)
    erasures = [e for e in events if e.action == "organization.erased"]
    assert [(e.tenant_id, e.target_id, e.actor_user_id) for e in erasures] == [
        (acme_org.id, acme_org.id, ops.users["admin"])
    ] * 2
    assert erasures[0].changes["stored_responses"] == 2
    assert SECRET.encode() not in raw and acme_org.keys["member"].encode() not in raw


def test_switchyard_org_erase_asks_for_yes_then_erases(
    world: tuple[str, Org, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base, ops, db_url = world
    initech = asyncio.run(make_org(db_url, "initech", roles=("admin",)))
    command = ["org", "--url", base, "--api-key", ops.keys["admin"], "erase", initech.id]
    assert main(command) == 1
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == f"switchyard org: erasing {initech.id} cannot be undone: add --yes"
    )
    assert httpx.get(f"{base}/v1/models", headers=auth(initech.keys["admin"])).status_code == 200
    assert main([*command, "--yes"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["organization_id"], printed["keys_revoked"]) == (initech.id, 1)
    assert httpx.get(f"{base}/v1/models", headers=auth(initech.keys["admin"])).status_code == 401


async def test_an_upload_that_ends_after_the_erasure_is_not_kept(world: tuple[str, Org, str]) -> None:
    """An upload of the organisation under way when it is erased (its key was good when the request came,
    its body still coming): before, its file was stored after the erasure had deleted the organisation's
    files, and a second erasure found it (`files` 1). Now the gateway removes it and says why (409
    `organization_erased`), and a second erasure finds nothing."""
    base, ops, db_url = world
    initech = await make_org(db_url, "initech", roles=("member",))
    boundary = "erasure-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    # More than the loopback's socket buffers hold (4 MiB sent, ~128 KiB received before the server reads):
    # once it is sent, the gateway is reading the body, so it checked the key already.
    lines = (json.dumps(LINE).encode() + b"\n") * (16 * 1024 * 1024 // len(json.dumps(LINE)))
    tail = json.dumps(LINE).encode() + f"\n\r\n--{boundary}--\r\n".encode()
    sent, erased = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield head + lines
        sent.set()
        await erased.wait()
        yield tail

    headers = {
        **auth(initech.keys["member"]),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + len(lines) + len(tail)),
    }
    path = f"/v1/admin/organizations/{initech.id}/erase"
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        uploading = asyncio.create_task(c.post("/v1/files", content=body(), headers=headers))
        await asyncio.wait_for(sent.wait(), 60)
        first = await c.post(path, headers=auth(ops.keys["admin"]))
        erased.set()
        upload = await uploading
        again = await c.post(path, headers=auth(ops.keys["admin"]))

    assert first.status_code == 200 and first.json()["files"] == 0, first.text
    assert (upload.status_code, upload.json()["error"]["code"]) == (409, "organization_erased"), upload.text
    rerun = again.json()
    assert {k: v for k, v in rerun.items() if k != "organization_id" and v not in (0, False)} == {}
