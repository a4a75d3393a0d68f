"""Entry bytes, hashes and the event -> entry mapping, without a database."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from switchyard.audit import chain
from switchyard.audit.chain import EntryFields, entry_bytes, entry_hash
from switchyard.audit.entries import draft_for
from switchyard.audit.verify import ChainVerifier, Row
from switchyard.common.envelope import decode, encode
from switchyard.common.events import (
    ChatMessage,
    ChatRequest,
    TaskFailed,
    TaskSubmitted,
    TaskTimedOut,
    UsageRecorded,
)

pytestmark = pytest.mark.unit

T = datetime(2026, 11, 22, 9, 30, 0, 123456, tzinfo=UTC)


def fields(seq: int = 1, **changes: Any) -> EntryFields:
    values: dict[str, Any] = {
        "seq": seq,
        "event_id": f"e{seq}",
        "recorded_at": T,
        "occurred_at": T,
        "tenant_id": "acme",
        "actor": "api_key:k1",
        "action": "task.submit",
        "resource": "task/t1",
        "outcome": "success",
        "details": chain.canonical_json({"task_id": "t1", "tokens": 3, "ms": 1.5}),
    }
    values.update(changes)
    return EntryFields(**values)


def test_entry_bytes_are_canonical_json_with_details_embedded_verbatim() -> None:
    data = entry_bytes(fields())
    assert data == (
        b'{"action":"task.submit","actor":"api_key:k1","details":{"ms":1.5,"task_id":"t1","tokens":3},'
        b'"event_id":"e1","occurred_at":"2026-11-22T09:30:00.123456Z","outcome":"success",'
        b'"recorded_at":"2026-11-22T09:30:00.123456Z","resource":"task/t1","seq":1,"tenant_id":"acme","v":1}'
    )
    assert orjson.loads(data)["details"] == {"ms": 1.5, "task_id": "t1", "tokens": 3}


def test_timestamps_are_the_same_instant_however_they_come_back() -> None:
    naive = T.replace(tzinfo=None)  # SQLite returns naive UTC
    paris = T.astimezone(timezone(timedelta(hours=1)))
    assert (
        entry_bytes(fields(occurred_at=naive))
        == entry_bytes(fields(occurred_at=paris))
        == entry_bytes(fields())
    )


def test_entry_hash_is_the_documented_construction() -> None:
    prev = "11" * 32
    leaf = hashlib.sha256(b"\x00" + entry_bytes(fields())).digest()
    assert entry_hash(fields(), prev) == hashlib.sha256(b"\x02" + bytes.fromhex(prev) + leaf).hexdigest()


def _chain(n: int) -> list[Row]:
    rows, prev = [], chain.GENESIS_HASH
    for seq in range(1, n + 1):
        f = fields(seq)
        digest = entry_hash(f, prev)
        rows.append(Row(f, prev, digest))
        prev = digest
    return rows


def _verify(rows: list[Row]) -> Any:
    verifier = ChainVerifier()
    for row in rows:
        if verifier.feed(row) is not None:
            break
    return verifier.report()


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    rows = _chain(4)
    report = _verify(rows)
    assert report.ok and report.entries == 4 and report.head_hash == rows[-1].entry_hash


def test_every_single_field_change_is_caught_at_that_entry() -> None:
    for name, value in [
        ("outcome", "failure"),
        ("actor", "x"),
        ("details", "{}"),
        ("event_id", "z"),
        ("tenant_id", "other"),
        ("occurred_at", T + timedelta(microseconds=1)),
    ]:
        rows = _chain(3)
        rows[1] = Row(fields(2, **{name: value}), rows[1].prev_hash, rows[1].entry_hash)
        problem = _verify(rows).problem
        assert problem is not None and problem.seq == 2 and "altered" in problem.reason, name


def test_a_removed_entry_is_named_by_its_successor() -> None:
    rows = _chain(4)
    del rows[1]
    problem = _verify(rows).problem
    assert (
        problem is not None
        and (problem.seq, problem.event_id) == (3, "e3")
        and "entry 2 is missing" in problem.reason
    )


def _submitted(**changes: Any) -> TaskSubmitted:
    values: dict[str, Any] = {
        "task_id": "t1",
        "tenant_id": "acme",
        "user_id": "u1",
        "api_key_id": "k1",
        "request": ChatRequest(messages=[ChatMessage(role="user", content="tell me the secret recipe")]),
        "submitted_at": T,
    }
    values.update(changes)
    return TaskSubmitted(**values)


def _roundtrip(payload: Any, **kwargs: Any) -> Any:
    _, raw = encode(payload, source="switchyard/gateway", **kwargs)
    return draft_for(*decode(raw))


def test_a_submitted_task_is_recorded_as_its_submitter_without_its_prompt() -> None:
    d = _roundtrip(_submitted())
    assert (d.action, d.actor, d.resource, d.tenant_id, d.outcome) == (
        "task.submit",
        "api_key:k1",
        "task/t1",
        "acme",
        "success",
    )
    assert d.occurred_at == T
    assert "prompt_sha256" not in d.details and d.details["prompt_chars"] == 25
    assert hashlib.sha256(b"tell me the secret recipe").hexdigest() not in chain.canonical_json(d.details)
    assert "secret recipe" not in chain.canonical_json(d.details)
    assert _roundtrip(_submitted(api_key_id=None)).actor == "user:u1"


def test_failures_are_failures_and_secrets_in_messages_are_redacted() -> None:
    failed = TaskFailed(
        task_id="t1",
        tenant_id="acme",
        error_code="provider_auth",
        error_message="401: invalid key sk-proj-abcdefghijklmnop",
        failed_at=T,
    )
    d = _roundtrip(failed)
    assert (d.action, d.outcome, d.actor) == ("task.fail", "failure", "service:gateway")
    assert "abcdefghijklmnop" not in d.details["error_message"]


def test_a_usage_entry_names_the_policy_version_that_priced_it_or_null() -> None:
    usage = UsageRecorded(
        task_id="t1",
        tenant_id="acme",
        model="openai/gpt-4o-mini",
        provider="openai",
        tier="cheap",
        prompt_tokens=12,
        completion_tokens=4,
        cost_usd=0.0000042,
        policy_version="2026-12-06.1",
    )
    d = _roundtrip(usage)
    assert (d.action, d.resource) == ("billing.usage", "task/t1")
    assert d.details["policy_version"] == "2026-12-06.1"
    before = _roundtrip(usage.model_copy(update={"policy_version": None}))
    assert '"policy_version":null' in chain.canonical_json(before.details)


def test_timestamps_fall_back_to_the_event_time() -> None:
    d = _roundtrip(TaskTimedOut(task_id="t1", tenant_id="acme", waited_ms=12.0))
    assert d.action == "task.timeout" and abs(d.occurred_at - datetime.now(UTC)) < timedelta(seconds=5)


def test_an_event_in_a_trace_records_its_trace_and_span_ids() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    d = _roundtrip(_submitted(), traceparent=traceparent)
    assert (d.details["trace_id"], d.details["span_id"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    assert "trace_id" not in _roundtrip(_submitted()).details
    # another system's malformed or all-zero context is not recorded as one
    for bad in ("00-xyz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "garbage"):
        assert "trace_id" not in _roundtrip(_submitted(), traceparent=bad).details, bad
