"""An Idempotency-Key's body digest, kept in the tasks bucket with its claim and its task, is keyed
(HMAC-SHA256 under the deployment's secret, SWITCHYARD_IDEMPOTENCY_SECRET): whoever reads the bucket
cannot confirm a guessed prompt by hashing it. A task stored by a gateway before this (the plain SHA-256
of the body's JSON, or of its bytes) is still found by its retry after the upgrade, and another body under
its key still refused. One gateway on a real nats-server; the bucket read and written as a client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.kv import KeyValue

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.gateway.taskapi.idempotency import claim_key, digest
from tests.integration.gateway.harness import Answerer, Org, auth, gateway_stack, make_org

pytestmark = pytest.mark.integration

SECRET = "deployment-secret-for-idempotency-0123456789"
BODY = b'{"model":"auto","max_tokens":20,"messages":[{"role":"user","content":"my salary is 91k"}]}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, str, Org, Path]]:
    tmp = tmp_path_factory.mktemp("keyed-digest")
    with gateway_stack(tmp, env={"SWITCHYARD_IDEMPOTENCY_SECRET": SECRET}) as (server, db_url, (base,)):
        org = asyncio.run(make_org(db_url, "acme", roles=("member",)))
        yield server, base, org, tmp / "gateway-0.log"


@pytest.fixture
async def tasks(stack: tuple[NatsServer, str, Org, Path]) -> AsyncIterator[KeyValue]:
    nc = await nats.connect(stack[0].url)
    try:
        yield await nc.jetstream().key_value(subjects.KV_TASKS)
    finally:
        await nc.close()


@pytest.fixture
async def answerer(stack: tuple[NatsServer, str, Org, Path]) -> AsyncIterator[Answerer]:
    me = await Answerer.start(stack[0].url)
    yield me
    await me.close()


async def _kept(bucket: KeyValue, key: str) -> dict[str, object]:
    entry = await bucket.get(key)
    return json.loads(entry.value or b"{}")  # type: ignore[no-any-return]


async def _rewrite(bucket: KeyValue, key: str, request_sha256: str) -> None:
    """The value as a gateway of the previous release wrote it: the body's plain digest."""
    await bucket.put(key, json.dumps({**await _kept(bucket, key), "request_sha256": request_sha256}).encode())


async def _post(c: httpx.AsyncClient, org: Org, key: str, body: bytes) -> httpx.Response:
    headers = {**auth(org.keys["member"]), "Idempotency-Key": key, "content-type": "application/json"}
    return await c.post("/v1/tasks", content=body, headers=headers)


async def test_the_kept_digest_is_keyed_and_the_secret_is_never_logged(
    stack: tuple[NatsServer, str, Org, Path], tasks: KeyValue, answerer: Answerer
) -> None:
    _, base, org, log = stack
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        first = await _post(c, org, "keyed-1", BODY)
        assert first.status_code == 202, first.text
        task_id = first.json()["id"]
        claim = await _kept(tasks, claim_key(org.id, "keyed-1"))
        state = await _kept(tasks, task_id)
        guessed = digest(BODY)  # what a reader of the bucket computes from a guessed prompt
        keyed = "hmac-sha256:" + hmac.new(SECRET.encode(), bytes.fromhex(guessed), hashlib.sha256).hexdigest()
        assert claim["request_sha256"] == keyed and state["request_sha256"] == keyed, (claim, state)
        assert guessed not in json.dumps([claim, state])
        assert hashlib.sha256(BODY).hexdigest() not in json.dumps([claim, state])
        again = await _post(c, org, "keyed-1", BODY)
        assert again.status_code == 202 and again.json()["id"] == task_id, again.text
        other = await _post(c, org, "keyed-1", BODY.replace(b"91k", b"92k"))
        assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert SECRET not in log.read_text()


@pytest.mark.parametrize("previous", ["json", "bytes"])
async def test_a_task_kept_with_a_previous_releases_digest_is_found_by_its_retry(
    previous: str, stack: tuple[NatsServer, str, Org, Path], tasks: KeyValue, answerer: Answerer
) -> None:
    _, base, org, _ = stack
    key = f"before-upgrade-{previous}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        first = await _post(c, org, key, BODY)
        assert first.status_code == 202, first.text
        task_id = first.json()["id"]
        await asyncio.sleep(0.3)  # stored
        plain = digest(BODY) if previous == "json" else hashlib.sha256(BODY).hexdigest()
        await _rewrite(tasks, claim_key(org.id, key), plain)
        await _rewrite(tasks, task_id, plain)
        again = await _post(c, org, key, BODY)
        assert again.status_code == 202 and again.json()["id"] == task_id, again.text
        other = await _post(c, org, key, BODY.replace(b"91k", b"92k"))
        assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert (await _kept(tasks, task_id))["request_sha256"] == plain  # a retry writes nothing
