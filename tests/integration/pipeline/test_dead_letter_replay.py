"""Dead letters on a real nats-server: a consumer that keeps failing dead-letters the event with the
reason; once it is fixed, `switchyard dlq replay` sends it back and it is handled exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import nats
import orjson
import pytest

from switchyard.cli.processes import NatsServer
from switchyard.common import bus, dlq, subjects
from switchyard.common.envelope import CloudEvent, encode
from switchyard.common.errors import SwitchyardError
from switchyard.common.events import TaskSubmitted
from tests.support.probe import start_probe
from tests.support.tasks import hello_task

pytestmark = pytest.mark.integration

CONSUMER = subjects.Consumer(
    durable="dlq-replay-probe",
    stream=subjects.STREAM_EVENTS,
    filter_subject=subjects.TASK_SUBMITTED,
    max_deliver=2,
)


def _cli(nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchyard.cli.main", "dlq", "--nats-url", nats_url, *args],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_a_dead_letter_is_listed_with_its_reason_and_replayed_once_fixed(
    nats_server: NatsServer,
) -> None:
    handled: list[str] = []
    broken = True

    async def handler(event: CloudEvent, payload: Any) -> None:
        if broken:
            raise SwitchyardError("the database is down", code="db_unavailable", retryable=True)
        handled.append(event.id)

    broker, publisher = await start_probe(
        nats_server.url, CONSUMER, "probe", handler, expected=[TaskSubmitted]
    )
    js = bus.jetstream(broker)
    try:
        event_id = await publisher.publish(hello_task("t-dlq-1"), tenant_id="acme")
        letters: list[dlq.DeadLetter] = []

        async def dead_lettered() -> bool:
            letters[:] = [x async for x in dlq.scan(js, service="probe")]
            return bool(letters)

        await _wait_for(dead_lettered)
        (letter,) = letters
        assert (letter.code, letter.reason) == ("db_unavailable", "the database is down")
        assert letter.original_subject == subjects.TASK_SUBMITTED
        assert letter.deliveries == 2
        assert letter.event_id == event_id
        assert handled == []

        listed = _cli(nats_server.url, "list", "--service", "probe", "--json")
        assert listed.returncode == 0, listed.stderr
        (row,) = [orjson.loads(line) for line in listed.stdout.splitlines()]
        assert row["seq"] == letter.seq and row["reason"] == "the database is down"
        assert row["consumer"] == letter.consumer == CONSUMER.durable  # the metric's `consumer` label
        assert "body" not in row and "hello" not in listed.stdout  # listings never print the prompt

        broken = False
        replayed = _cli(nats_server.url, "replay", str(letter.seq))
        assert replayed.returncode == 0, replayed.stderr

        async def handled_once() -> bool:
            return handled == [event_id]

        await _wait_for(handled_once)
        assert [x async for x in dlq.scan(js, service="probe")] == []  # gone: it cannot be replayed twice
        again = _cli(nats_server.url, "replay", str(letter.seq))
        assert again.returncode == 1 and f"no dead letter with sequence {letter.seq}" in again.stderr
        await asyncio.sleep(1.0)
        assert handled == [event_id]
    finally:
        await bus.stop_consumers(broker)
        await broker.stop()


async def test_replay_refuses_an_ambiguous_request_and_an_unknown_sequence(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await bus.ensure_streams(nc.jetstream())
    finally:
        await nc.close()
    neither = _cli(nats_server.url, "replay")
    assert neither.returncode == 2 and "give dead-letter sequences, or --all" in neither.stderr
    unknown = _cli(nats_server.url, "show", "999")
    assert unknown.returncode == 1 and "no dead letter with sequence 999" in unknown.stderr
    empty = _cli(nats_server.url, "list")
    assert empty.returncode == 0 and "no dead letters" in empty.stdout


async def test_an_event_on_a_wrong_subject_or_naming_two_tenants_is_dead_lettered_not_handled(
    nats_server: NatsServer,
) -> None:
    """Two mistakes another system can make on the bus: a typo in the subject (the stream takes it, and
    only a consumer of everything, as the audit's, sees it) and a CloudEvents `tenantid` other than the
    task's `tenant_id`. Neither is handled (the ledger would have recorded a task nobody runs); each is a
    dead letter saying why."""
    handled: list[str] = []

    async def handler(event: CloudEvent, payload: Any) -> None:
        handled.append(event.id)

    everything = subjects.Consumer(
        "dlq-everything-probe", subjects.STREAM_EVENTS, f"{subjects.PREFIX}.task.>"
    )
    broker, publisher = await start_probe(nats_server.url, everything, "everything", handler, expected=None)
    js = bus.jetstream(broker)
    try:
        typo_id, typo = encode(hello_task("t-typo"), source="urn:other", tenant_id="acme")
        await js.publish(f"{subjects.PREFIX}.task.submited", typo, headers={"Nats-Msg-Id": typo_id})
        two_id, two = encode(hello_task("t-two"), source="urn:other", tenant_id="globex")
        await js.publish(subjects.TASK_SUBMITTED, two, headers={"Nats-Msg-Id": two_id})
        good = await publisher.publish(hello_task("t-good"), tenant_id="acme")
        letters: list[dlq.DeadLetter] = []

        async def both_dead_lettered() -> bool:
            letters[:] = [x async for x in dlq.scan(js, service="everything")]
            return len(letters) == 2 and handled == [good]

        await _wait_for(both_dead_lettered)
        reasons = {
            letter.event_id: (letter.code, letter.reason, letter.original_subject) for letter in letters
        }
        assert (
            reasons[typo_id][0] == "invalid_event"
            and reasons[typo_id][2] == f"{subjects.PREFIX}.task.submited"
        )
        assert f"is published on {subjects.TASK_SUBMITTED}" in reasons[typo_id][1]
        assert "tenantid 'globex'" in reasons[two_id][1]
    finally:
        await bus.stop_consumers(broker)
        await broker.stop()


async def test_a_listing_cut_at_its_limit_says_where_the_rest_begins(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await bus.ensure_streams(js)
        for i in range(3):
            await js.publish(
                subjects.dlq_subject("probe"),
                b"{}",
                headers={
                    "Nats-Msg-Id": f"dlq-probe-{i}",
                    "Switchyard-Dlq-Service": "probe",
                    "Switchyard-Dlq-Code": "invalid_event",
                    "Switchyard-Dlq-Reason": f"bad {i}",
                    "Switchyard-Dlq-Subject": subjects.TASK_SUBMITTED,
                    "Switchyard-Dlq-Stream-Seq": str(i + 1),
                },
            )
    finally:
        await nc.close()
    cut = _cli(nats_server.url, "list", "--limit", "2", "--json")
    assert cut.returncode == 0, cut.stderr
    assert [orjson.loads(line)["seq"] for line in cut.stdout.splitlines()] == [
        1,
        2,
    ]  # stdout stays JSON lines
    assert "more dead letters from sequence 3 (--from-seq 3)" in cut.stderr
    whole = _cli(nats_server.url, "list", "--limit", "3")
    assert whole.returncode == 0 and "more dead letters" not in whole.stderr
    # `--limit 0` said "more dead letters from sequence 1" and then "no dead letters"; `--limit -1` was a
    # stack trace (IndexError): a limit is at least 1, said in one line
    for limit in ("0", "-1"):
        refused = _cli(nats_server.url, "list", "--limit", limit)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert "--limit" in refused.stderr and "at least 1" in refused.stderr and not refused.stdout


@pytest.mark.parametrize("which", ["--all", "one"])
async def test_the_dead_letters_of_one_event_are_replayed_as_one_publish(
    nats_server: NatsServer, which: str
) -> None:
    """An event two consumers of its subject dead-lettered (a bad task: the classifier and the audit) is two
    dead letters of one stored message. Replayed, its original goes back once, which both consumers hear:
    `replay --all` (or either letter's sequence) publishes it once and removes both letters, instead of
    storing it twice (every consumer of the subject then handled it twice, a task ran twice)."""
    handled: dict[str, list[str]] = {"first": [], "second": []}
    broken = True

    def failing(name: str) -> Any:
        async def handler(event: CloudEvent, payload: Any) -> None:
            if broken:
                raise SwitchyardError("down", code="db_unavailable", retryable=False)
            handled[name].append(event.id)

        return handler

    consumers = []
    for name in ("first", "second"):
        consumer = subjects.Consumer(f"dlq-twin-{name}", subjects.STREAM_EVENTS, subjects.TASK_SUBMITTED)
        consumers.append(
            await start_probe(nats_server.url, consumer, name, failing(name), expected=[TaskSubmitted])
        )
    (broker, publisher), _ = consumers
    js = bus.jetstream(broker)
    try:
        event_id = await publisher.publish(hello_task("t-twin"), tenant_id="acme")
        letters: list[dlq.DeadLetter] = []

        async def both() -> bool:
            letters[:] = [x async for x in dlq.scan(js)]
            return len(letters) == 2

        await _wait_for(both)
        assert len({letter.original_seq for letter in letters}) == 1
        broken = False
        replayed = _cli(
            nats_server.url, "replay", *(["--all"] if which == "--all" else [str(letters[1].seq)])
        )
        assert replayed.returncode == 0, replayed.stderr
        assert f"with {letters[0].seq if which == 'one' else letters[1].seq} of" in replayed.stdout

        async def heard() -> bool:
            return handled["first"] != [] and handled["second"] != []

        await _wait_for(heard)
        await asyncio.sleep(1.0)
        assert handled == {"first": [event_id], "second": [event_id]}
        stored = await js.stream_info(subjects.STREAM_EVENTS, subjects_filter=subjects.TASK_SUBMITTED)
        assert stored.state.subjects == {subjects.TASK_SUBMITTED: 2}  # the original and one replay
        assert [x async for x in dlq.scan(js)] == []
    finally:
        for b, _ in consumers:
            await bus.stop_consumers(b)
            await b.stop()
