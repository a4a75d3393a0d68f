"""Where an entry's event came from (its subject, who may publish there): inside the hashed bytes (format v2),
from the subject the server stored it on rather than the payload, in every SIEM format; an entry written
before (no provenance) keeps its v1 bytes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from switchyard.audit import chain
from switchyard.audit.chain import EntryFields, entry_bytes, entry_hash
from switchyard.audit.entries import draft_for
from switchyard.audit.export import cef, leef, structured, syslog
from switchyard.audit.export.formats import Encoder
from switchyard.audit.export.record import Record
from switchyard.audit.verify import ChainVerifier, Row
from switchyard.common import subjects
from switchyard.common.envelope import decode, encode
from switchyard.common.events import ChatMessage, ChatRequest, TaskSubmitted

pytestmark = pytest.mark.unit

T = datetime(2026, 11, 22, 9, 30, 0, 123456, tzinfo=UTC)
TOKEN = subjects.tenant_token("acme")
SCOPED = subjects.scoped(subjects.TASK_SUBMITTED, "acme")
FROM_INTEGRATOR = chain.canonical_json({"subject": SCOPED, "by": [f"integrator:{TOKEN}"]})
# An entry's bytes before entries recorded their provenance (format v1): still what a v1 entry hashes.
V1 = (
    b'{"action":"task.submit","actor":"api_key:k1","details":{"task_id":"t1"},"event_id":"e1",'
    b'"occurred_at":"2026-11-22T09:30:00.123456Z","outcome":"success",'
    b'"recorded_at":"2026-11-22T09:30:00.123456Z","resource":"task/t1","seq":1,"tenant_id":"acme","v":1}'
)


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
        "details": chain.canonical_json({"task_id": "t1"}),
    }
    values.update(changes)
    return EntryFields(**values)


def test_an_entry_without_provenance_keeps_its_v1_bytes_and_one_with_it_is_v2() -> None:
    assert entry_bytes(fields()) == V1
    v2 = entry_bytes(fields(provenance=FROM_INTEGRATOR))
    assert v2 == V1.replace(
        b'"outcome":"success",', b'"outcome":"success","provenance":' + FROM_INTEGRATOR.encode() + b","
    ).replace(b'"v":1}', b'"v":2}')
    assert orjson.loads(v2)["provenance"] == {"by": [f"integrator:{TOKEN}"], "subject": SCOPED}


def _chain(provenances: list[str | None]) -> list[Row]:
    rows, prev = [], chain.GENESIS_HASH
    for seq, provenance in enumerate(provenances, start=1):
        f = fields(seq, provenance=provenance)
        digest = entry_hash(f, prev)
        rows.append(Row(f, prev, digest))
        prev = digest
    return rows


def _problem(rows: list[Row]) -> Any:
    verifier = ChainVerifier()
    for row in rows:
        if verifier.feed(row) is not None:
            break
    return verifier.report().problem


def test_old_and_new_entries_verify_together_and_any_change_to_a_provenance_is_caught() -> None:
    assert _problem(_chain([None, None, FROM_INTEGRATOR, FROM_INTEGRATOR])) is None
    claimed = chain.canonical_json({"subject": subjects.TASK_SUBMITTED, "by": ["service:gateway"]})
    for changed in (claimed, None):  # edited, or removed (the entry passed off as a v1 one)
        rows = _chain([None, FROM_INTEGRATOR, FROM_INTEGRATOR])
        rows[1] = Row(fields(2, provenance=changed), rows[1].prev_hash, rows[1].entry_hash)
        problem = _problem(rows)
        assert problem is not None and problem.seq == 2 and "altered" in problem.reason, changed
    rows = _chain([None, None])  # a provenance given to an old entry afterwards
    rows[0] = Row(fields(1, provenance=FROM_INTEGRATOR), rows[0].prev_hash, rows[0].entry_hash)
    assert _problem(rows).seq == 1


def test_the_entry_says_the_subject_not_the_user_the_payload_claims() -> None:
    """A system scoped to acme submits a task naming another user and key: the actor is what it claims
    (and says so), the provenance what the server established."""
    task = TaskSubmitted(
        task_id="t1",
        tenant_id="acme",
        user_id="usr_alice",
        api_key_id="key_of_alice",
        request=ChatRequest(messages=[ChatMessage(role="user", content="hi")]),
        submitted_at=T,
    )
    _, raw = encode(task, source="switchyard/gateway")
    event, payload = decode(raw, subject=SCOPED)
    d = draft_for(event, payload, subject=SCOPED)
    assert d.actor == "api_key:key_of_alice"
    assert d.provenance == {"subject": SCOPED, "by": [f"integrator:{TOKEN}"]}
    d = draft_for(event, payload, subject=subjects.TASK_SUBMITTED)
    assert d.provenance == {"subject": subjects.TASK_SUBMITTED, "by": ["service:gateway", "integrator:all"]}
    assert draft_for(event, payload).provenance is None


def _record(provenance: str | None) -> Record:
    return Record(
        seq=7,
        event_id="e7",
        recorded_at=T,
        occurred_at=T,
        tenant_id="acme",
        actor="api_key:key_of_alice",
        action="task.submit",
        resource="task/t1",
        outcome="success",
        details='{"task_id":"t1"}',
        entry_hash="ab" * 32,
        provenance=provenance,
    )


def test_every_siem_format_carries_the_provenance_and_an_old_entry_exports_as_before() -> None:
    new, old = _record(FROM_INTEGRATOR), _record(None)
    _, ext = cef.parse(cef.encode(new))
    assert (ext["flexString1Label"], ext["flexString1"]) == ("subject", SCOPED)
    assert (ext["flexString2Label"], ext["flexString2"]) == ("publishedBy", f"integrator:{TOKEN}")
    assert "flexString1" not in cef.parse(cef.encode(old))[1]
    attrs = dict(a.split("=", 1) for a in leef.encode(new).split("|x09|", 1)[1].split("\t"))
    assert (attrs["subject"], attrs["publishedBy"]) == (SCOPED, f"integrator:{TOKEN}")
    assert "publishedBy" not in leef.encode(old)
    wanted = {"subject": SCOPED, "by": [f"integrator:{TOKEN}"]}
    ocsf = structured.ocsf(new)
    assert ocsf["unmapped"]["provenance"] == wanted and ocsf["src_endpoint"]["svc_name"] == SCOPED
    assert "provenance" not in structured.ocsf(old)["unmapped"]
    assert structured.ecs(new)["switchyard"]["ledger"]["provenance"] == wanted
    assert "provenance" not in structured.ecs(old)["switchyard"]["ledger"]
    framed = syslog.message(new, "body", hostname="h")
    assert f'subject="{SCOPED}" published_by="integrator:{TOKEN}"'.encode() in framed
    hec = orjson.loads(Encoder("ecs", "hec").encode(new))
    assert hec["event"]["switchyard"]["ledger"]["provenance"] == wanted
    # an entry too large for a frame loses its details, never its provenance
    big = _record(FROM_INTEGRATOR)
    big = Record(
        **{**{n: getattr(big, n) for n in Record.__slots__}, "details": '{"x":"' + "y" * 70_000 + '"}'}
    )
    sent = orjson.loads(Encoder("ocsf", "line").encode(big))
    assert sent["unmapped"]["details"]["truncated"] and sent["unmapped"]["provenance"] == wanted
    assert hashlib.sha256(big.details.encode()).hexdigest() == sent["unmapped"]["details"]["details_sha256"]
