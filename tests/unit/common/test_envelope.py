from __future__ import annotations

import gc
import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from switchyard.common import subjects
from switchyard.common.envelope import MAX_EVENT_BYTES, decode, encode, written
from switchyard.common.errors import InvalidEvent, TenantMismatch
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    Classification,
    TaskCancelled,
    TaskClassified,
    TaskFailed,
    TaskFeedback,
    TaskSubmitted,
)

pytestmark = pytest.mark.unit


def _task() -> TaskSubmitted:
    return TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        request=ChatRequest(messages=[ChatMessage(role="user", content="hello")]),
        submitted_at=datetime(2026, 11, 22, tzinfo=UTC),
    )


def _classification() -> Classification:
    return Classification(
        type="chitchat", confidence=1.0, complexity=0.1, urgency=0.1, model_version="v", latency_ms=1.0
    )


def test_round_trip_is_a_cloudevent_with_extensions() -> None:
    eid, raw = encode(
        _task(),
        source="switchyard/test",
        tenant_id="acme",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    obj = orjson.loads(raw)
    assert obj["specversion"] == "1.0"
    assert obj["type"] == "switchyard.task.submitted.v1"
    assert obj["id"] == eid
    assert obj["tenantid"] == "acme"
    event, payload = decode(raw, (TaskSubmitted,))
    assert payload == _task()
    assert event.traceparent is not None and event.traceparent.startswith("00-")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"specversion":"1.0","id":"x","source":"s","type":"t"}', "data"),
        (b'{"specversion":"0.3","id":"x","source":"s","type":"t","data":{}}', "specversion"),
        (b'{"specversion":"1.0","id":"x","source":"s","type":"nope.v1","data":{}}', "unknown event type"),
    ],
)
def test_invalid_events_are_refused_with_a_reason(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        decode(raw)
    assert fragment in err.value.message


def test_wrong_type_for_the_consumer_is_refused() -> None:
    _, raw = encode(_task(), source="s")
    with pytest.raises(InvalidEvent, match="not accepted here"):
        decode(raw, (TaskClassified,))


def test_invalid_payload_names_the_field() -> None:
    _, raw = encode(_task(), source="s")
    obj = orjson.loads(raw)
    obj["data"]["request"]["messages"] = []
    with pytest.raises(InvalidEvent, match=r"request\.chat\.messages"):
        decode(orjson.dumps(obj))


def test_oversized_event_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="exceeds"):
        decode(b" " * (MAX_EVENT_BYTES + 1))


def test_writing_a_large_payload_sets_off_no_collection_and_data_written_once_is_put_in_as_it_is() -> None:
    """A large task's values as Python objects live only until written: the collections their allocation
    set off walked them, and every object of the process once enough were promoted (0.5-0.8 s on a
    gateway). And a task written by its check (`written`) is published as written: the same event."""
    messages = [ChatMessage(role="user", content=f"m{n}") for n in range(30_000)]
    task = TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        request=ChatRequest(messages=messages),
        submitted_at=datetime(2026, 12, 6, tzinfo=UTC),
    )
    collections: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()  # counts from zero: no young collection set off by the test's own allocations
    gc.callbacks.append(seen)
    try:
        _, dumped = encode(task, source="t", event_id="e1")
    finally:
        gc.callbacks.remove(seen)
    assert collections in ([], [0]) and gc.isenabled()  # at most one young collection, of what was left
    _, as_written = encode(task, source="t", event_id="e1", data=written(task))
    assert decode(as_written)[1] == decode(dumped)[1] == task


def test_a_tenantid_that_disagrees_with_the_payloads_tenant_is_refused() -> None:
    # Another system's event whose CloudEvents `tenantid` names one tenant and its data another: readers
    # that route on the extension and the services (which read the data) would disagree about whose it is.
    _, raw = encode(_task(), source="s", tenant_id="other")
    with pytest.raises(InvalidEvent) as err:
        decode(raw, (TaskSubmitted,))
    assert "tenantid 'other'" in err.value.message and "'acme'" in err.value.message
    _, nested = encode(
        TaskClassified(task=_task(), classification=_classification()), source="s", tenant_id="other"
    )
    with pytest.raises(InvalidEvent):
        decode(nested)
    _, without = encode(_task(), source="s")  # the extension is optional
    assert decode(without, (TaskSubmitted,))[1] == _task()


@pytest.mark.parametrize(
    ("subject", "fragment"),
    [
        (
            "switchyard.task.submited",
            "is published on switchyard.task.submitted, not switchyard.task.submited",
        ),
        ("switchyard.task.routed", "not switchyard.task.routed"),
    ],
)
def test_an_event_on_another_subject_than_its_types_is_refused(subject: str, fragment: str) -> None:
    _, raw = encode(_task(), source="s", tenant_id="acme")
    with pytest.raises(InvalidEvent) as err:
        decode(raw, subject=subject)
    assert fragment in err.value.message
    assert decode(raw, subject="switchyard.task.submitted")[1] == _task()


def test_a_result_is_accepted_only_on_its_own_tasks_result_subject() -> None:
    failed = TaskFailed(
        task_id="t1",
        tenant_id="acme",
        error_code="x",
        error_message="y",
        failed_at=datetime(2026, 12, 6, tzinfo=UTC),
    )
    _, raw = encode(failed, source="s", tenant_id="acme")
    assert decode(raw, subject=subjects.result_subject("acme", "t1"))[1] == failed
    assert decode(raw, subject="switchyard.result.t1")[1] == failed  # a previous release's executor
    with pytest.raises(InvalidEvent) as err:
        decode(raw, subject=subjects.result_subject("acme", "t2"))
    assert subjects.result_subject("acme", "t1") in err.value.message
    with pytest.raises(TenantMismatch):
        decode(raw, subject=subjects.result_subject("globex", "t1"))


def test_a_tenant_token_is_a_subject_token_of_every_tenant_id() -> None:
    odd = ["acme", "a.b", "a b", "*", ">", "é" * 64, "x"]
    tokens = [subjects.tenant_token(t) for t in odd]
    assert all(len(t) == subjects.TENANT_TOKEN_HEX and t.isalnum() and t == t.lower() for t in tokens)
    assert len(set(tokens)) == len(odd)
    assert subjects.tenant_token("acme") == hashlib.sha256(b"acme").hexdigest()[:16]  # the documented rule


@pytest.mark.parametrize(
    "payload",
    [
        lambda tenant: _task().model_copy(update={"tenant_id": tenant}),
        lambda tenant: TaskCancelled(
            task_id="t1", tenant_id=tenant, cancelled_at=datetime(2026, 12, 7, tzinfo=UTC)
        ),
        lambda tenant: TaskFeedback(
            task_id="t1", tenant_id=tenant, rating="good", at=datetime(2026, 12, 7, tzinfo=UTC)
        ),
    ],
)
def test_a_scoped_subject_takes_only_its_own_tenants_events(payload: Any) -> None:
    """A tenant-scoped system publishes on `<subject>.<token>`: an event naming its own tenant is read as
    on the bare subject; one naming another tenant is a TenantMismatch carrying the subject's token."""
    mine = payload("acme")
    _, raw = encode(mine, source="s", tenant_id="acme")
    base = type(mine).SUBJECT
    assert decode(raw, subject=subjects.scoped(base, "acme"))[1] == mine
    assert decode(raw, subject=base)[1] == mine
    with pytest.raises(TenantMismatch) as err:
        decode(raw, subject=subjects.scoped(base, "globex"))
    assert err.value.code == "tenant_mismatch" and err.value.token == subjects.tenant_token("globex")
    with pytest.raises(InvalidEvent) as wrong:
        decode(raw, subject=f"{base}.{subjects.tenant_token('acme')}.more")
    assert not isinstance(wrong.value, TenantMismatch)


def test_a_task_on_a_scoped_subject_cannot_say_it_came_from_the_gateway() -> None:
    """The gateway's tasks (`origin: http`) skip the executor's look-up of a stored result, since their ids
    are the gateway's own: a tenant-scoped system's task saying so is refused, so a task id it reuses is
    always looked up (and answered with its stored result, not run again unpaid)."""
    task = _task().model_copy(update={"tenant_id": "acme", "origin": "http"})
    _, raw = encode(task, source="s", tenant_id="acme")
    assert decode(raw, subject=subjects.TASK_SUBMITTED)[1] == task  # the gateway's subject
    with pytest.raises(InvalidEvent, match="must say origin 'bus', not 'http'") as err:
        decode(raw, subject=subjects.scoped(subjects.TASK_SUBMITTED, "acme"))
    assert not isinstance(err.value, TenantMismatch)
    bus_task = task.model_copy(update={"origin": "bus"})
    _, raw = encode(bus_task, source="s", tenant_id="acme")
    assert decode(raw, subject=subjects.scoped(subjects.TASK_SUBMITTED, "acme"))[1] == bus_task
