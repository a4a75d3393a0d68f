"""A rolling upgrade from 44c1657, gateways first: this release's gateway (its own process, on a real
nats-server and SQLite) answers chat completions that a 44c1657 executor runs, played as its code answers
(tests/support/previous_release/wire.py: chunks on `switchyard.chunk.<task_id>`, the result stored on
`switchyard.result.<task_id>`). And once this release's executors run, what they copy to those subjects for
the previous gateways is not heard twice (docs/operations/upgrades.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import nats
import orjson
import pytest
from nats.aio.msg import Msg

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, ids, legacy_subjects, subjects
from switchyard.common.envelope import decode, encode
from switchyard.common.events import TaskCompleted, TaskSubmitted, Usage
from switchyard.common.streaming import Chunk, encode_chunk
from switchyard.gateway.tasks import TaskClient
from tests.integration.gateway.harness import Bases, Org, auth, gateway_stack, make_org
from tests.integration.gateway.test_abandoned_tasks import _task, connected
from tests.support.previous_release.wire import previous_executor_answers
from tests.support.tasks import completed_of

pytestmark = pytest.mark.integration
__all__ = ["connected"]  # the fixture, used by name
BODY = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
MODEL = "local/smollm2-135m-instruct"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, Bases, Org]]:
    """The gateway with its settings' defaults: SWITCHYARD_LEGACY_SUBJECTS is on in this release."""
    tmp = tmp_path_factory.mktemp("gateway")
    with gateway_stack(tmp) as (server, db_url, bases):
        yield server, bases, asyncio.run(make_org(db_url, "acme", roles=("member",)))


def _done(task: TaskSubmitted, content: str) -> TaskCompleted:
    return completed_of(
        task,
        content,
        model=MODEL,
        provider="local",
        tier="local",
        usage=Usage(prompt_tokens=9, completion_tokens=2),
    )


def _chunks(task: TaskSubmitted) -> list[Chunk]:
    """What a 44c1657 executor streams of "Paris": a start chunk when the gateway asks for one."""
    words = [Chunk(seq=0, delta="Par", model=MODEL), Chunk(seq=1, delta="is")]
    if task.chat().stream_start:
        words = [Chunk(seq=0, model=MODEL), *(w.model_copy(update={"seq": w.seq + 1}) for w in words)]
    return [*words, Chunk(seq=len(words), done=True, finish_reason="stop")]


@pytest.fixture
async def previous_executor(stack: tuple[NatsServer, Bases, Org]) -> AsyncIterator[list[TaskSubmitted]]:
    nc = await nats.connect(stack[0].url)
    seen: list[TaskSubmitted] = []

    async def on_task(msg: Msg) -> None:
        _, task = decode(msg.data, (TaskSubmitted,))
        assert isinstance(task, TaskSubmitted)
        seen.append(task)
        chunks = _chunks(task) if task.chat().stream else []
        await previous_executor_answers(nc, _done(task, "Paris"), event_id=ids.new_id(), chunks=chunks)

    await nc.subscribe(subjects.TASK_SUBMITTED, cb=on_task)
    await nc.flush()
    yield seen
    await nc.close()


async def test_a_previous_executor_s_answer_reaches_the_client(
    stack: tuple[NatsServer, Bases, Org], previous_executor: list[TaskSubmitted]
) -> None:
    _, (base,), org = stack
    async with httpx.AsyncClient(timeout=20) as c:
        r = await c.post(f"{base}/v1/chat/completions", json=BODY, headers=auth(org.keys["member"]))
    assert r.status_code == 200, r.text  # was 504 after SWITCHYARD_TASK_TIMEOUT_S
    assert r.json()["choices"][0]["message"]["content"] == "Paris" and len(previous_executor) == 1


async def test_a_previous_executor_s_stream_reaches_the_client(
    stack: tuple[NatsServer, Bases, Org], previous_executor: list[TaskSubmitted]
) -> None:
    _, (base,), org = stack
    async with httpx.AsyncClient(timeout=20) as c:
        r = await c.post(
            f"{base}/v1/chat/completions", json={**BODY, "stream": True}, headers=auth(org.keys["member"])
        )
    assert r.status_code == 200
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", r.text
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Paris"
    assert "error" not in r.text


async def test_this_release_s_copies_are_not_heard_twice(
    connected: tuple[nats.NATS, bus.EventPublisher],
) -> None:
    """An executor of this release sends each chunk and its result on both subjects: the gateway's stream
    has each chunk once."""
    nc, _ = connected
    js = nc.jetstream()
    publisher = bus.EventPublisher(js, source="test/executor", legacy_subjects=True)
    task = _task()
    task.request.stream = True  # type: ignore[union-attr]

    async def executor(_: Msg) -> None:
        both = legacy_subjects.both(nc)
        for chunk in _chunks(task):
            await both(subjects.chunk_subject(task.tenant_id, task.task_id), encode_chunk(chunk))
        await publisher.publish(
            _done(task, "Paris"), subject=subjects.result_subject(task.tenant_id, task.task_id)
        )

    await nc.subscribe(subjects.TASK_SUBMITTED, cb=executor)
    await nc.flush()
    client = TaskClient(nc, publisher, legacy_subjects=True)
    got = [item async for item in client.stream(task, timeout_s=5.0)]
    assert [c.delta for c in got if isinstance(c, Chunk) and c.delta] == ["Par", "is"]
    assert [c.seq for c in got if isinstance(c, Chunk)] == [0, 1, 2] and isinstance(got[-1], TaskCompleted)


async def test_a_result_on_the_old_subject_counts_only_for_the_tenant_it_names(
    connected: tuple[nats.NATS, bus.EventPublisher],
) -> None:
    nc, publisher = connected
    task = _task()

    async def executor(_: Msg) -> None:
        other = _done(task, "not yours").model_copy(update={"tenant_id": "globex"})
        _, raw = encode(other, source="switchyard/executor")
        await nc.jetstream().publish(
            legacy_subjects.previous_subject(subjects.result_subject(task.tenant_id, task.task_id)) or "", raw
        )
        await asyncio.sleep(0.3)
        await previous_executor_answers(nc, _done(task, "Paris"), event_id=ids.new_id(), chunks=[])

    await nc.subscribe(subjects.TASK_SUBMITTED, cb=executor)
    await nc.flush()
    outcome = await TaskClient(nc, publisher, legacy_subjects=True).run(task, timeout_s=5.0)
    assert isinstance(outcome, TaskCompleted) and outcome.content == "Paris"
