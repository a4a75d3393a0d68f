"""The task API across two gateway replicas: a task submitted on one is read and cancelled on the other,
and the cancellation lets go of what the submitting replica holds for it (its admission)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.gateway.harness import Bases, Org, auth, gateway_stack, make_org

pytestmark = pytest.mark.integration

BODY = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Name a prime."}]}


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Bases, Org]]:
    env = {"SWITCHYARD_LIMIT_ORG_CONCURRENT_TASKS": "1"}
    with gateway_stack(tmp_path, count=2, env=env) as (_, db_url, bases):
        yield bases, asyncio.run(make_org(db_url, "acme", roles=("member",)))


async def test_a_task_cancelled_on_another_replica_gives_its_admission_back(
    replicas: tuple[Bases, Org],
) -> None:
    """No executor has taken the task (a backlog): cancelled on the replica that submitted it, its
    concurrency slot is given back within SETTLE_WAIT_S; cancelled on the other, it was held until an
    executor skipped the task, or the hour's follow ended."""
    (one, two), org = replicas
    key = auth(org.keys["member"])
    async with httpx.AsyncClient(timeout=10) as c:
        task = (await c.post(f"{one}/v1/tasks", json=BODY, headers=key)).json()
        refused = await c.post(f"{one}/v1/tasks", json=BODY, headers=key)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "concurrency_limit_exceeded"
        read = await c.get(f"{two}/v1/tasks/{task['id']}", headers=key)
        assert read.status_code == 200 and read.json()["status"] == "queued"
        cancelled = await c.delete(f"{two}/v1/tasks/{task['id']}", headers=key)
        assert cancelled.json()["status"] == "cancelled"
        again = await c.delete(f"{one}/v1/tasks/{task['id']}", headers=key)
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        deadline = time.monotonic() + 10
        while (next_one := await c.post(f"{one}/v1/tasks", json=BODY, headers=key)).status_code == 429:
            assert time.monotonic() < deadline, "the cancelled task still holds the slot"
            await asyncio.sleep(0.5)
        assert next_one.status_code == 202, next_one.text
