"""SIEM encoders under hypothesis, beyond tests/unit/audit/test_export_encoders.py (which round-trips CEF and
LEEF text fields): every format x framing with every field fuzzed (event id, hash, hostname, SD-ID value
characters, huge details), the frame limit is never exceeded, a stream of frames cut anywhere reassembles
(octet counts are bytes), structured-data values round-trip through RFC 5424 escaping, and JSON outputs
carry the details intact."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.audit.chain import canonical_json
from switchyard.audit.export import cef, leef, syslog
from switchyard.audit.export.formats import FORMATS, FRAMINGS, Encoder
from switchyard.audit.export.record import Record

pytestmark = pytest.mark.unit
EXAMPLES = 60 * (25 if os.environ.get("SWITCHYARD_LONG_TESTS") == "1" else 1)  # `make fuzz`: 25x
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
details_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def records(draw: st.DrawFn, big: bool = False) -> Record:
    details = draw(st.dictionaries(text, details_values, max_size=5))
    if big:
        details["blob"] = draw(st.text(min_size=1, max_size=3)) * draw(st.integers(20_000, 70_000))
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=draw(st.integers(0, 10**13)))
    return Record(
        seq=draw(st.integers(1, 2**53)),
        event_id=draw(text),
        recorded_at=when,
        occurred_at=when - timedelta(milliseconds=draw(st.integers(0, 10**6))),
        tenant_id=draw(text),
        actor=draw(text),
        action=draw(text),
        resource=draw(text),
        outcome=draw(st.sampled_from(["success", "failure"])),
        details=canonical_json(details),
        entry_hash=draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
    )


def _structured_details(fmt: str, obj: dict[str, object]) -> str:
    found = obj["unmapped"]["details"] if fmt == "ocsf" else obj["switchyard"]["ledger"]["details"]  # type: ignore[index]
    return canonical_json(found)


def _details_of(fmt: str, framing: str, out: bytes) -> str:
    if framing == "hec":
        event = orjson.loads(out)["event"]
        return _text_details(fmt, event) if isinstance(event, str) else _structured_details(fmt, event)
    if framing == "syslog":
        (msg,), rest = syslog.read_frames(out)
        assert rest == b""
        return _text_details(fmt, msg.decode("utf-8").split("\ufeff", 1)[1])
    assert out.endswith(b"\n") and out.count(b"\n") == 1, "one line per entry"
    return _text_details(fmt, out[:-1].decode("utf-8"))


def _text_details(fmt: str, body: str) -> str:
    if fmt == "cef":
        return cef.parse(body)[1]["cs3"]
    if fmt == "leef":
        return leef.parse(body)[1]["details"]
    return _structured_details(fmt, orjson.loads(body))


@FUZZ
@given(record=records(), fmt=st.sampled_from(FORMATS), framing=st.sampled_from(FRAMINGS), host=text)
def test_every_format_and_framing_carries_the_details_intact(
    record: Record, fmt: str, framing: str, host: str
) -> None:
    out = Encoder(fmt=fmt, framing=framing, hostname=host).encode(record)
    out.decode("utf-8")  # valid UTF-8 whatever went in
    got = _details_of(fmt, framing, out)
    assert orjson.loads(got) == orjson.loads(record.details)


@FUZZ
@given(
    record=records(big=True),
    fmt=st.sampled_from(FORMATS),
    framing=st.sampled_from(FRAMINGS),
    limit=st.integers(4096, 65536),
)
def test_the_frame_limit_is_never_exceeded(record: Record, fmt: str, framing: str, limit: int) -> None:
    # Every field but the details is at most 80 characters here: an entry always fits once its details are
    # hashed, so TooLarge would be a defect.
    out = Encoder(fmt=fmt, framing=framing, hostname="h", max_bytes=limit).encode(record)
    payload = out.split(b" ", 1)[1] if framing == "syslog" else out
    assert len(payload) <= limit
    if len(record.details.encode()) > limit:
        assert b"details_sha256" in out, "an oversized entry goes out with its details hashed, not cut"


@FUZZ
@given(batch=st.lists(records(), min_size=1, max_size=6), cuts=st.lists(st.integers(0, 10**6), max_size=5))
def test_a_stream_of_frames_cut_anywhere_reassembles(batch: list[Record], cuts: list[int]) -> None:
    encoder = Encoder(fmt="cef", framing="syslog", hostname="höst")
    frames = [encoder.encode(r) for r in batch]
    stream = b"".join(frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    received: list[bytes] = []
    buffer = b""
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        buffer += stream[start:end]
        got, buffer = syslog.read_frames(buffer)
        received += got
    assert buffer == b""
    assert received == [f.split(b" ", 1)[1] for f in frames]
    for frame in frames:
        count, _, msg = frame.partition(b" ")
        assert int(count) == len(msg), "the count is of bytes, not characters"


SD_PARAM = re.compile(rb'(\w+)="((?:[^"\\\]]|\\["\\\]])*)"')


@FUZZ
@given(record=records())
def test_structured_data_values_round_trip(record: Record) -> None:
    msg = syslog.message(record, "body", hostname="h")
    sd_start = msg.index(b"[")
    sd_end = msg.index(b"\xef\xbb\xbf") - 1  # the space before the BOM
    sd = msg[sd_start:sd_end]
    assert sd.endswith(b"]")
    params = {k.decode(): v.decode() for k, v in SD_PARAM.findall(sd)}
    unescape = {k: re.sub(r"\\([\"\\\]])", r"\1", v) for k, v in params.items()}
    assert unescape == {
        "seq": str(record.seq),
        "event_id": record.event_id,
        "tenant": record.tenant_id,
        "entry_hash": record.entry_hash,
    }
    head = msg[:sd_start].decode("utf-8").split(" ")
    assert all(33 <= ord(c) <= 126 for c in head[2] + head[3] + head[5])  # HOSTNAME APP-NAME MSGID
