"""Bad messages on every subject of subjects.py, against the running platform (`switchyard up`): invalid
UTF-8, JSON that is not a CloudEvent, a well-formed event of a type the subject does not carry, and an event
over the 4 MB limit. Each consumer of the subject dead-letters each of them once, with a code and a reason,
keeping the original bytes; garbage requests on every request/reply subject get an answer or silence, never
a crash; afterwards every service is still running.

tests/e2e/test_bus_contract.py covers task.submitted with four payloads; this covers every subject.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import nats
import orjson
import pytest

from switchyard.common import subjects
from tests.chaos.stack import ChaosStack

pytestmark = pytest.mark.e2e

BAD: dict[str, bytes] = {
    "invalid-utf8": b"\xc3\x28\xff\xfe not utf-8 \x80",
    "not-an-event": b'{"hello": ["world", 1, null], "specversion": 2}',
    # 4 MB of JSON that is no event (an event over the envelope's cap, 8 MiB, is over max_payload too: the
    # bus refuses it at publish; test_envelope covers the cap)
    "large": b'{"pad":"' + b"x" * (4 * 1024 * 1024 + 10) + b'"}',
}
WRONG_TYPE = orjson.dumps(
    {
        "specversion": "1.0",
        "id": "fuzz-wrong-type",
        "source": "urn:fuzz",
        "type": "switchyard.fuzz.unknown.v1",
        "time": datetime.now(UTC).isoformat(),
        "data": {"task_id": "x"},
    }
)
# run only when tenants consented to their features being kept (the outcome recorder)
OPT_IN = {
    subjects.CLASSIFIER_OUTCOMES_CONSUMER.durable,
    subjects.CLASSIFIER_OUTCOMES_ERASURE_CONSUMER.durable,
}


def consumers() -> list[subjects.Consumer]:
    return [
        v for v in vars(subjects).values() if isinstance(v, subjects.Consumer) and v.durable not in OPT_IN
    ]


def matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def stored_subjects() -> list[str]:
    """Every concrete subject in subjects.py that the events stream stores (plus one result subject)."""
    found = {
        v
        for k, v in vars(subjects).items()
        if k.isupper()
        and isinstance(v, str)
        and "*" not in v
        and ">" not in v
        and any(matches(p, v) for p in subjects.STREAM_EVENTS_SUBJECTS)
    }
    return sorted(found | {subjects.result_subject("acme", "fuzz-task")})


def rpc_subjects() -> list[str]:
    return sorted(
        v
        for k, v in vars(subjects).items()
        if k.isupper() and "_RPC_" in k and isinstance(v, str) and not k.endswith(("PREFIX", "QUEUE"))
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    stack = ChaosStack(tmp_path_factory.mktemp("busfuzz"), siem=False).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def nc(platform: ChaosStack) -> AsyncIterator[nats.NATS]:
    client = await nats.connect(platform.bus_url)
    yield client
    await client.close()


def test_every_stored_subject_has_a_consumer() -> None:
    orphans = [s for s in stored_subjects() if not any(matches(c.filter_subject, s) for c in consumers())]
    assert not orphans, orphans


async def test_bad_messages_on_every_subject_are_dead_lettered_with_a_reason(
    platform: ChaosStack, nc: nats.NATS
) -> None:
    js = nc.jetstream()
    expected: dict[
        int, tuple[str, str, bytes, set[str]]
    ] = {}  # stream seq -> (subject, kind, bytes, services)
    for subject in stored_subjects():
        services = {c.durable.split("-")[0] for c in consumers() if matches(c.filter_subject, subject)}
        for kind, payload in [*BAD.items(), ("wrong-type", WRONG_TYPE)]:
            ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": uuid.uuid4().hex})
            # The audit service records any well-formed event (types added later are kept, not described).
            wanted = services - {"audit"} if kind == "wrong-type" else services
            expected[ack.seq] = (subject, kind, payload, wanted)

    found: dict[int, dict[str, dict[str, str]]] = {}
    for _ in range(240):
        info = await js.stream_info(subjects.STREAM_DLQ)
        found = {}
        for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
            m = await js.get_msg(subjects.STREAM_DLQ, seq)
            origin = int((m.headers or {}).get("Switchyard-Dlq-Stream-Seq", "0"))
            if origin in expected:
                assert m.data == expected[origin][2], "a dead letter keeps the original bytes"
                found.setdefault(origin, {})[m.headers["Switchyard-Dlq-Service"]] = m.headers  # type: ignore[index]
        if all(want <= set(found.get(seq, {})) for seq, (_, _, _, want) in expected.items()):
            break
        await asyncio.sleep(0.5)

    missing = [
        f"{subject} {kind}: {sorted(want - set(found.get(seq, {})))}"
        for seq, (subject, kind, _, want) in expected.items()
        if not want <= set(found.get(seq, {}))
    ]
    assert not missing, f"not dead-lettered by: {missing}"
    for seq, by_service in found.items():
        for service, headers in by_service.items():
            assert headers["Switchyard-Dlq-Code"], (expected[seq][:2], service)
            assert headers["Switchyard-Dlq-Reason"].strip(), (expected[seq][:2], service)
            assert headers["Switchyard-Dlq-Subject"] == expected[seq][0]
    letters = sum(map(len, found.values()))
    print(f"\n{len(expected)} bad messages on {len(stored_subjects())} subjects, {letters} dead letters")
    async with httpx.AsyncClient() as c:
        ready = await c.get(f"{platform.base_url}/readyz", params={"strict": "true"})
    assert ready.status_code == 200, ready.text
    assert "exited with code" not in platform.up_log(), platform.up_log()[-3000:]


async def test_garbage_on_every_request_reply_subject_is_answered_or_ignored(
    platform: ChaosStack, nc: nats.NATS
) -> None:
    answered = 0
    injection = "' OR 1=1 --"
    for subject in rpc_subjects():
        for payload in (*BAD.values(), b"", b"{}", orjson.dumps({"tenant_id": injection, "limit": -1})):
            try:
                reply = await nc.request(subject, payload[:900_000], timeout=3)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                continue
            answered += 1
            body = orjson.loads(reply.data)
            assert isinstance(body, dict), (subject, body)
            # Refused with an error, or (a well-formed request) answered for that literal tenant only: its
            # name echoed, or nothing found (no other tenant's rows).
            assert "error" in body or body.get("tenant_id") == injection or body.get("data") == [], (
                subject,
                body,
            )
    assert answered > 0
    async with httpx.AsyncClient() as c:
        ready = await c.get(f"{platform.base_url}/readyz", params={"strict": "true"})
    assert ready.status_code == 200, ready.text  # every service still there
    assert "exited with code" not in platform.up_log(), platform.up_log()[-3000:]
