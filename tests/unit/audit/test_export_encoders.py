"""SIEM encoders: CEF and LEEF escaping round-trips for any text, RFC 5424 messages and RFC 6587 octet
counts in bytes, the frame limit, and the OCSF / ECS mappings."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchyard.audit.chain import canonical_json
from switchyard.audit.export import cef, leef, structured, syslog
from switchyard.audit.export.formats import Encoder
from switchyard.audit.export.record import Record

pytestmark = pytest.mark.unit

WHEN = datetime(2026, 11, 22, 10, 15, 30, 123456, tzinfo=UTC)
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


def record(**changes: object) -> Record:
    values: dict[str, object] = {
        "seq": 42,
        "event_id": "evt-42",
        "recorded_at": WHEN,
        "occurred_at": WHEN,
        "tenant_id": "acme",
        "actor": "api_key:k1",
        "action": "task.submit",
        "resource": "task/t1",
        "outcome": "success",
        "details": canonical_json({"note": "ünï ✓ = | \\ \n"}),
        "entry_hash": "ab" * 32,
    }
    values.update(changes)
    return Record(**values)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(actor=text, action=text, resource=text, tenant=text, details=text)
def test_cef_round_trips_any_text(actor: str, action: str, resource: str, tenant: str, details: str) -> None:
    r = record(actor=actor, action=action, resource=resource, tenant_id=tenant, details=details)
    encoded = cef.encode(r)
    assert "\n" not in encoded and "\r" not in encoded
    header, ext = cef.parse(encoded)
    assert header[4] == action.replace("\r", " ").replace("\n", " ")
    assert (ext["suser"], ext["act"], ext["cs1"], ext["cs2"], ext["cs3"]) == (
        actor,
        action,
        tenant,
        resource,
        details,
    )
    assert (ext["cn1"], ext["externalId"], ext["cs4"]) == ("42", "evt-42", "ab" * 32)


@settings(max_examples=150, deadline=None)
@given(actor=text, action=text, resource=text, tenant=text, details=text)
def test_leef_round_trips_any_text(actor: str, action: str, resource: str, tenant: str, details: str) -> None:
    r = record(actor=actor, action=action, resource=resource, tenant_id=tenant, details=details)
    encoded = leef.encode(r)
    assert "\n" not in encoded and encoded.count("\t") == 12  # 13 attributes, the tab only between them
    header, attrs = leef.parse(encoded)
    assert header[4] == action.replace("\r", " ").replace("\n", " ").replace("\t", " ") and header[5] == "x09"
    assert (attrs["usrName"], attrs["cat"], attrs["tenant"], attrs["resource"], attrs["details"]) == (
        actor,
        action,
        tenant,
        resource,
        details,
    )


def test_cef_escapes_as_the_spec_says() -> None:
    r = record(action="a|b\\c", details="x=y\\z\nw|v")
    encoded = cef.encode(r)
    assert encoded.startswith("CEF:0|Switchyard|Switchyard|0.1.0|a\\|b\\\\c|a\\|b\\\\c success|3| rt=")
    assert "cs3=x\\=y\\\\z\\nw|v " in encoded


@settings(max_examples=100, deadline=None)
@given(tenant=text, action=text, details=text)
def test_syslog_frames_count_utf8_bytes(tenant: str, action: str, details: str) -> None:
    r = record(tenant_id=tenant, action=action, details=details)
    frame = Encoder(fmt="cef", framing="syslog", hostname="höst one").encode(r)
    (msg,), rest = syslog.read_frames(frame + frame[:3])
    assert rest == frame[:3]
    count, _, body = frame.partition(b" ")
    assert int(count) == len(body) == len(msg)
    head = msg.decode("utf-8").split(" ", 7)
    assert head[0] == "<110>1" and head[1] == "2026-11-22T10:15:30.123456Z" and head[3] == "switchyard"
    assert all(33 <= ord(c) <= 126 for c in head[2] + head[5]) and len(head[5]) <= 32
    assert "\ufeffCEF:0|" in msg.decode("utf-8")


def test_structured_data_escapes_quote_backslash_bracket() -> None:
    msg = syslog.message(record(tenant_id='a"b\\c]d', outcome="failure"), "x", hostname="h")
    assert msg.startswith(b"<108>1 ")
    assert b'tenant="a\\"b\\\\c\\]d"' in msg


def test_an_oversized_entry_is_sent_with_its_details_hashed_not_dropped() -> None:
    big = record(details=canonical_json({"blob": "é" * 40_000}))
    frame = Encoder(fmt="leef", framing="syslog", max_bytes=64 * 1024).encode(big)
    assert len(frame) < 64 * 1024 + 10
    _, attrs = leef.parse(frame.split(b" ", 1)[1].decode().split("\ufeff", 1)[1])
    details = orjson.loads(attrs["details"])
    assert details["truncated"] is True and details["details_bytes"] == len(big.details.encode())
    assert attrs["seq"] == "42" and attrs["entryHash"] == "ab" * 32


def test_ocsf_api_activity_and_ecs() -> None:
    o = structured.ocsf(record(action="key.revoke", outcome="failure"))
    assert (o["class_uid"], o["category_uid"], o["activity_id"], o["type_uid"]) == (6003, 6, 4, 600304)
    assert (o["status_id"], o["metadata"]["sequence"], o["metadata"]["uid"]) == (2, 42, "evt-42")
    assert o["time"] == 1795342530123 and o["unmapped"]["details"] == {"note": "ünï ✓ = | \\ \n"}
    assert structured.activity("task.submit") == (1, "Create") and structured.activity("x.y")[0] == 99
    e = structured.ecs(record(action="key.create"))
    assert e["event"]["category"] == ["configuration"] and e["event"]["sequence"] == 42
    assert e["@timestamp"] == "2026-11-22T10:15:30.123456Z" and e["organization"]["id"] == "acme"
    line = Encoder(fmt="ecs", framing="line").encode(record())
    assert line.endswith(b"\n") and orjson.loads(line)["event"]["id"] == "evt-42"
    hec = orjson.loads(Encoder(fmt="ocsf", framing="hec", hostname="h").encode(record()))
    assert (
        hec["fields"]["seq"] == 42
        and hec["event"]["class_uid"] == 6003
        and hec["time"] == pytest.approx(WHEN.timestamp())
    )


def test_an_entry_in_a_trace_names_it_in_every_format() -> None:
    traced = record(details=canonical_json({"task_id": "t1", "trace_id": "ab" * 16, "span_id": "cd" * 8}))
    _, ext = cef.parse(cef.encode(traced))
    assert (ext["cs5Label"], ext["cs5"], ext["cs6Label"], ext["cs6"]) == (
        "traceId",
        "ab" * 16,
        "spanId",
        "cd" * 8,
    )
    _, attrs = leef.parse(leef.encode(traced))
    assert (attrs["traceId"], attrs["spanId"]) == ("ab" * 16, "cd" * 8)
    assert structured.ocsf(traced)["metadata"]["correlation_uid"] == "ab" * 16
    e = structured.ecs(traced)
    assert (e["trace"], e["span"]) == ({"id": "ab" * 16}, {"id": "cd" * 8})
    assert f'trace_id="{"ab" * 16}"'.encode() in syslog.message(traced, "x", hostname="h")
    hec = orjson.loads(Encoder(fmt="cef", framing="hec", hostname="h").encode(traced))
    assert hec["fields"]["trace_id"] == "ab" * 16
    # without one (or with ids that are not W3C hex) nothing is made up
    for plain in (
        record(),
        record(details=canonical_json({"trace_id": "AB" * 16, "span_id": "cd" * 8})),
        record(details=canonical_json({"trace_id": "ab" * 16})),
    ):
        assert (
            "cs5" not in cef.parse(cef.encode(plain))[1]
            and "traceId" not in leef.parse(leef.encode(plain))[1]
        )
        assert "correlation_uid" not in structured.ocsf(plain)["metadata"] and "trace" not in structured.ecs(
            plain
        )
        assert b"trace_id=" not in syslog.message(plain, "x", hostname="h")
    assert record(details='not json "trace_id"').trace() is None  # the text encoders take any details
