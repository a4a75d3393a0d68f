"""The executor as its own process on a real nats-server, calling a fake OpenAI server and the real local
model. The test plays the router: it publishes TaskRouted events and watches what comes back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from switchyard.common import bus, ids, subjects
from switchyard.common.envelope import decode, encode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    ProviderCallRecorded,
    RouteCandidate,
    RoutingDecision,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskRouted,
    TaskSubmitted,
    TaskTimedOut,
)
from switchyard.common.providers import providers_bucket, read_all
from switchyard.common.streaming import Chunk, decode_chunk
from tests.integration.executor.conftest import nats_and_fake_openai
from tests.support import event_ids
from tests.support.fake_openai import FakeOpenAI
from tests.support.procs import service_process

pytestmark = pytest.mark.integration
QUESTION = "Which city is the capital of France? Answer in English."
LOCAL = RouteCandidate(
    model="local/smollm2-135m-instruct",
    provider="local",
    upstream_model="SmolLM2-135M-Instruct",
    tier="local",
)


def openai(upstream: str) -> RouteCandidate:
    return RouteCandidate(model=f"openai/{upstream}", provider="openai", upstream_model=upstream, tier="fast")


@dataclass
class Stack:
    nats_url: str
    fake: FakeOpenAI
    fake_url: str


@contextlib.contextmanager
def executor_stack(tmp: Path, settings: dict[str, str]) -> Iterator[Stack]:
    """A real nats-server, a fake OpenAI upstream and the executor as its own process (with `settings`
    on top of the connection settings), answering pings."""
    with nats_and_fake_openai(tmp) as upstream:
        env = {**upstream.env, **event_ids.ENV, **settings}
        with service_process("switchyard.executor", env=env, log_path=tmp / "executor.log") as proc:
            asyncio.run(_wait_until_answering(upstream.nats.url, proc, tmp / "executor.log"))
            yield Stack(upstream.nats.url, upstream.fake, upstream.url)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = {
        "SWITCHYARD_RETRY_MAX": "1",
        "SWITCHYARD_RETRY_BASE_S": "0.05",
        "SWITCHYARD_LOCAL_SEED": "42",
        "SWITCHYARD_LOCAL_MAX_TOKENS": "24",
    }
    with executor_stack(tmp_path_factory.mktemp("executor"), settings) as running:
        yield running


async def _wait_until_answering(url: str, proc: object, log: Path) -> None:
    nc = await nats.connect(url)
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:  # type: ignore[attr-defined]
                raise RuntimeError(f"the executor exited:\n{log.read_text()[-3000:]}")
            try:
                await nc.request(subjects.ping_subject("executor"), b"", timeout=0.5)
                return
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await nc.close()


@dataclass
class Watch:
    """Everything the executor says about one task: call records, chunks in arrival order, the result."""

    calls: list[Msg] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    result: asyncio.Future[Msg] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


async def run_task(
    nc: nats.NATS,
    candidates: list[RouteCandidate],
    *,
    stream: bool = False,
    event_id: str | None = None,
    task_id: str | None = None,
) -> tuple[str, Watch, TaskRouted]:
    task_id = task_id or ids.new_id()
    watch = Watch()

    async def on_call(msg: Msg) -> None:
        _, call = decode(msg.data)
        if isinstance(call, ProviderCallRecorded) and call.task_id == task_id:
            watch.calls.append(msg)

    async def on_chunk(msg: Msg) -> None:
        watch.chunks.append(decode_chunk(msg.data))

    async def on_result(msg: Msg) -> None:
        if not watch.result.done():
            watch.result.set_result(msg)

    subs = [
        await nc.subscribe(subjects.PROVIDER_CALL, cb=on_call),
        await nc.subscribe(subjects.chunk_subject("acme", task_id), cb=on_chunk),
        await nc.subscribe(subjects.result_subject("acme", task_id), cb=on_result),
    ]
    request = ChatRequest(  # a stream as this release's gateway asks for it: its start named (seq 0)
        messages=[ChatMessage(role="user", content=QUESTION)],
        max_tokens=16,
        stream=stream,
        stream_start=stream or None,
    )
    task = TaskSubmitted(task_id=task_id, tenant_id="acme", request=request, submitted_at=datetime.now(UTC))
    routed = TaskRouted(
        task=task,
        classification=Classification(
            type="qa", confidence=1, complexity=0.1, urgency=0.5, model_version="t", latency_ms=1
        ),
        decision=RoutingDecision(tier="fast", candidates=candidates, policy_version="t"),
    )
    await bus.EventPublisher(nc.jetstream(), source="test/router").publish(
        routed, event_id=event_id or ids.new_id(), tenant_id="acme", event_subject=task_id
    )
    try:
        await asyncio.wait_for(asyncio.shield(watch.result), timeout=60)
        await asyncio.sleep(0.1)  # call records published before the result are in by now
    finally:
        for sub in subs:
            await sub.unsubscribe()
    return task_id, watch, routed


def outcome(watch: Watch) -> TaskCompleted | TaskFailed:
    _, payload = decode(watch.result.result().data)
    assert isinstance(payload, TaskCompleted | TaskFailed)
    return payload


async def test_announces_what_it_can_call(client: nats.NATS, stack: Stack) -> None:
    statuses = await read_all(await providers_bucket(client.jetstream()))
    assert set(statuses) == {"local", "openai"}  # no Anthropic key, no anthropic
    assert statuses["openai"].endpoint == stack.fake_url.removeprefix("http://")
    assert statuses["local"].available and statuses["local"].announced_by.startswith("executor-")


async def test_a_failing_provider_falls_through_to_the_local_model(client: nats.NATS) -> None:
    event_id = ids.new_id()
    _, watch, _ = await run_task(client, [openai("error-503"), LOCAL], event_id=event_id)
    done = outcome(watch)
    assert isinstance(done, TaskCompleted), done
    assert (done.provider, done.model, done.tier, done.attempts) == ("local", LOCAL.model, "local", 3)
    assert "Paris" in done.content and 0 < done.usage.completion_tokens <= 16
    records = [(m.headers or {}, decode(m.data)[1]) for m in watch.calls]
    assert [(r.attempt, r.provider, r.outcome) for _, r in records] == [  # type: ignore[attr-defined]
        (1, "openai", "overloaded"),
        (2, "openai", "overloaded"),
        (3, "local", "ok"),
    ]
    # Output ids derive from the routed event's id, so a redelivered task republishes the same ids.
    assert [h["Nats-Msg-Id"] for h, _ in records] == [
        event_ids.derived(event_id, f"call-{n}", tenant_id="acme") for n in (1, 2, 3)
    ]
    result_id = event_ids.derived(event_id, "result", tenant_id="acme")
    assert (watch.result.result().headers or {})["Nats-Msg-Id"] == result_id


async def test_an_account_out_of_credit_is_not_retried_and_falls_back(client: nats.NATS) -> None:
    """OpenAI's 429 `insufficient_quota` is its own failure, `provider_quota_exhausted` (it was
    `provider_rate_limited`, which clients wait out): the same model is not asked again, the next candidate
    answers, and with none left the task fails with it."""
    _, watch, _ = await run_task(client, [openai("error-quota"), openai("gpt-fake")])
    done = outcome(watch)
    assert isinstance(done, TaskCompleted) and done.model == "openai/gpt-fake", done
    outcomes = [decode(m.data)[1].outcome for m in watch.calls]  # type: ignore[attr-defined]
    assert outcomes == ["quota_exhausted", "ok"]
    _, watch, _ = await run_task(client, [openai("error-quota")])
    failed = outcome(watch)
    assert isinstance(failed, TaskFailed) and failed.error_code == "provider_quota_exhausted", failed
    assert "exceeded your current quota" in failed.error_message and failed.retry_after_s is None


async def test_a_stream_arrives_in_order_and_ends_with_done(client: nats.NATS) -> None:
    _, watch, _ = await run_task(client, [openai("error-401"), openai("gpt-fake")], stream=True)
    done = outcome(watch)
    assert isinstance(done, TaskCompleted) and done.model == "openai/gpt-fake"
    chunks = watch.chunks
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert chunks[0].names_model() and chunks[0].model == "openai/error-401"  # begun, before any text
    assert chunks[1].reset and chunks[1].model == "openai/gpt-fake"  # failed over before any text
    assert all(c.model is None for c in chunks[2:])  # the reset named it
    assert "".join(c.delta or "" for c in chunks) == done.content == f"Hello! You said: {QUESTION}"
    assert chunks[-1].done and chunks[-1].finish_reason == "stop"


async def test_the_first_chunk_names_the_model_answering_before_its_text(client: nats.NATS) -> None:
    _, watch, _ = await run_task(client, [openai("gpt-fake")], stream=True)
    assert isinstance(outcome(watch), TaskCompleted)
    texts = [c for c in watch.chunks if c.delta]
    assert len(texts) > 1 and not any(c.reset for c in watch.chunks)
    first = watch.chunks[0]
    assert first.names_model() and first.model == "openai/gpt-fake"
    assert all(c.model is None for c in watch.chunks[1:])  # named once


async def cancel(nc: nats.NATS, task_id: str, *, tenant_id: str = "acme", how: str = "cancelled") -> None:
    """As the gateway's task API (or the gateway, when a stream's client goes away) publishes it; or, with
    `how="timed_out"`, as the gateway publishes a task it stopped waiting for (a 504)."""
    event: TaskCancelled | TaskTimedOut = TaskCancelled(
        task_id=task_id, tenant_id=tenant_id, cancelled_at=datetime.now(UTC)
    )
    if how == "timed_out":
        event = TaskTimedOut(task_id=task_id, tenant_id=tenant_id, waited_ms=120_000.0)
    await bus.EventPublisher(nc.jetstream(), source="test/gateway").publish(
        event, tenant_id=tenant_id, event_subject=task_id
    )


@pytest.mark.parametrize("how", ["cancelled", "timed_out"])
async def test_a_cancelled_stream_is_cut_and_what_it_spent_is_billed(
    client: nats.NATS, stack: Stack, how: str
) -> None:
    task_id = ids.new_id()
    first_text = asyncio.Event()

    async def on_chunk(msg: Msg) -> None:
        if decode_chunk(msg.data).delta:
            first_text.set()

    sub = await client.subscribe(subjects.chunk_subject("acme", task_id), cb=on_chunk)
    started = time.monotonic()
    # 11 words 0.5 s apart: more than 5 s if it ran to its end
    running = asyncio.create_task(run_task(client, [openai("drip-0.5")], stream=True, task_id=task_id))
    await asyncio.wait_for(first_text.wait(), 30)
    await cancel(client, task_id, how=how)
    _, watch, _ = await running
    await sub.unsubscribe()
    failed = outcome(watch)
    assert isinstance(failed, TaskFailed) and failed.error_code == "task_cancelled", failed
    assert time.monotonic() - started < 5.0
    assert stack.fake.scenarios.finished["drip-0.5"] == 0  # the upstream's stream was cut, not drained
    # The text already sent ends with an explicit error, and the call is billed on an estimate of what the
    # upstream spent (the prompt and the text received): billable, since no answer was delivered.
    assert watch.chunks[0].names_model() and watch.chunks[1].delta and watch.chunks[-1].error is not None
    assert watch.chunks[-1].error.code == "task_cancelled"
    calls = [decode(m.data)[1] for m in watch.calls]
    assert [(c.outcome, c.billable, c.usage_estimated) for c in calls] == [  # type: ignore[attr-defined]
        ("cancelled", True, True)
    ]
    assert calls[0].usage.prompt_tokens > 0 and calls[0].usage.completion_tokens > 0  # type: ignore[attr-defined]
    # and the outcome says so, for the gateway's budget counter
    assert [(c.model, c.usage) for c in failed.charged] == [(calls[0].model, calls[0].usage)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["cancelled", "timed_out"])
async def test_a_task_cancelled_before_it_runs_is_not_run(client: nats.NATS, stack: Stack, how: str) -> None:
    """Timed out: under a backlog, a task whose client got its 504 is not run when its turn comes."""
    task_id = ids.new_id()
    await cancel(client, task_id, how=how)
    await asyncio.sleep(0.3)  # heard before the task arrives
    _, watch, _ = await run_task(client, [openai("never-called")], task_id=task_id)
    failed = outcome(watch)
    assert isinstance(failed, TaskFailed) and (failed.error_code, failed.attempts) == ("task_cancelled", 0)
    assert watch.calls == [] and stack.fake.scenarios.calls["never-called"] == 0


async def test_a_cancellation_counts_only_for_its_own_tenant(client: nats.NATS) -> None:
    task_id = ids.new_id()
    await cancel(client, task_id, tenant_id="someone-else")
    await asyncio.sleep(0.3)
    _, watch, _ = await run_task(client, [openai("gpt-fake")], task_id=task_id)
    assert isinstance(outcome(watch), TaskCompleted)


async def test_a_stream_broken_after_text_ends_with_an_error_not_a_short_answer(client: nats.NATS) -> None:
    _, watch, _ = await run_task(client, [openai("break"), LOCAL], stream=True)
    failed = outcome(watch)
    assert isinstance(failed, TaskFailed) and failed.error_code == "provider_network"
    assert watch.chunks[0].names_model() and watch.chunks[1].delta and watch.chunks[-1].error is not None
    assert not any(c.done for c in watch.chunks)
    assert [decode(m.data)[1].provider for m in watch.calls] == ["openai"]  # type: ignore[attr-defined]


async def test_a_redelivered_task_is_not_run_twice(client: nats.NATS, stack: Stack) -> None:
    event_id = ids.new_id()
    _, first, routed = await run_task(client, [openai("once-only")], event_id=event_id)
    assert isinstance(outcome(first), TaskCompleted)
    before = stack.fake.scenarios.calls["once-only"]
    # The same event again under another Nats-Msg-Id, as a copy re-published after JetStream's duplicate
    # window would bring it (a router that crashed before its ack and came back minutes later): its task
    # was submitted longer ago than that window.
    old = routed.task.model_copy(update={"submitted_at": datetime.now(UTC) - timedelta(minutes=10)})
    copy = routed.model_copy(update={"task": old})
    _, body = encode(copy, source="test/router", event_id=event_id, tenant_id="acme")
    await client.jetstream().publish(subjects.TASK_ROUTED, body, headers={"Nats-Msg-Id": ids.new_id()})
    await asyncio.sleep(1.0)
    assert stack.fake.scenarios.calls["once-only"] == before


async def test_garbage_on_the_routed_subject_goes_to_the_dead_letter_stream(client: nats.NATS) -> None:
    js = client.jetstream()
    await js.publish(subjects.TASK_ROUTED, b"{not json", headers={"Nats-Msg-Id": ids.new_id()})
    deadline = time.monotonic() + 15
    while True:
        try:
            msg = await js.get_last_msg(subjects.STREAM_DLQ, subjects.dlq_subject("executor"))
            break
        except nats.js.errors.NotFoundError:
            assert time.monotonic() < deadline, "nothing reached the dead-letter stream"
            await asyncio.sleep(0.1)
    assert msg.data == b"{not json"
    assert msg.headers is not None and msg.headers["Switchyard-Dlq-Code"] == "invalid_event"
