"""The task API's Idempotency-Key under real races across two gateway replicas: one key runs exactly one
body. Two different bodies sent with the same key at the same instant get one task (the body that runs is
the one answered 202) and one `409 idempotency_key_reused`; the same body, sent twice at once, gets one
task for both."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import nats
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import subjects
from switchyard.common.envelope import decode
from switchyard.common.events import TaskSubmitted
from tests.integration.gateway.harness import Bases, Org, auth, gateway_stack, make_org

pytestmark = pytest.mark.integration

PAIRS = 200


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, Bases, Org]]:
    tmp_path = tmp_path_factory.mktemp("key-races")
    env = {
        "SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": "1000",
        "SWITCHYARD_LIMIT_USER_REQUESTS_PER_MIN": "10000",
    }
    with gateway_stack(tmp_path, count=2, env=env) as (server, db_url, bases):
        yield server, bases, asyncio.run(make_org(db_url, "acme", roles=("member",)))


def _body(text: str) -> dict[str, object]:
    return {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": text}]}


async def _submitted(url: str) -> dict[str, list[str]]:
    """Each task id's submitted prompts, as the events stream holds them (what the pipeline runs)."""
    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream(timeout=30).pull_subscribe(subjects.TASK_SUBMITTED, durable=None)
        left = (await sub.consumer_info()).num_pending
        seen: dict[str, list[str]] = {}
        while left > 0:
            batch = await sub.fetch(min(left, 100), timeout=30)
            left -= len(batch)
            for msg in batch:
                _, task = decode(msg.data, (TaskSubmitted,))
                assert isinstance(task, TaskSubmitted)
                seen.setdefault(task.task_id, []).append(str(task.chat().messages[0].content))
        return seen
    finally:
        await nc.close()


async def test_two_bodies_under_one_key_at_once_run_the_body_answered(
    replicas: tuple[NatsServer, Bases, Org],
) -> None:
    server, (one, two), org = replicas
    async with httpx.AsyncClient(timeout=30) as c:

        async def pair(i: int) -> tuple[httpx.Response, httpx.Response]:
            headers = {**auth(org.keys["member"]), "Idempotency-Key": f"race-{i}"}
            first, second = await asyncio.gather(
                c.post(f"{one}/v1/tasks", json=_body(f"{i} A"), headers=headers),
                c.post(f"{two}/v1/tasks", json=_body(f"{i} B"), headers=headers),
            )
            return first, second

        answers = await asyncio.gather(*(pair(i) for i in range(PAIRS)))
    ran = await _submitted(server.url)
    wrong = []
    for i, (a, b) in enumerate(answers):
        codes = sorted((a.status_code, b.status_code))
        assert codes == [202, 409], (i, a.text, b.text)
        refused = a if a.status_code == 409 else b
        assert refused.json()["error"]["code"] == "idempotency_key_reused", refused.text
        accepted, body = (a, f"{i} A") if a.status_code == 202 else (b, f"{i} B")
        if ran.get(accepted.json()["id"]) != [body]:
            wrong.append((i, body, ran.get(accepted.json()["id"])))
    assert not wrong, f"{len(wrong)} of {PAIRS} keys ran another body than the one answered 202: {wrong}"


async def test_one_body_sent_twice_at_once_is_one_task(replicas: tuple[NatsServer, Bases, Org]) -> None:
    server, (one, two), org = replicas
    async with httpx.AsyncClient(timeout=30) as c:

        async def pair(i: int) -> list[httpx.Response]:
            headers = {**auth(org.keys["member"]), "Idempotency-Key": f"twice-{i}"}
            sent = (c.post(f"{base}/v1/tasks", json=_body(f"{i}"), headers=headers) for base in (one, two))
            return list(await asyncio.gather(*sent))

        answers = await asyncio.gather(*(pair(i) for i in range(PAIRS)))
    ran = await _submitted(server.url)
    for i, got in enumerate(answers):
        assert [r.status_code for r in got] == [202, 202], (i, [r.text for r in got])
        assert got[0].json()["id"] == got[1].json()["id"]
        assert ran[got[0].json()["id"]] == [f"{i}"]
