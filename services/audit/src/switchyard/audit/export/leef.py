"""IBM QRadar Log Event Extended Format (LEEF 2.0), encoding and parsing. Pure.

    LEEF:2.0|Switchyard|Switchyard|0.1.0|<action>|x09|<key=value>\\t<key=value>...

Attributes are separated by a tab (declared as `x09`). Header fields escape `\\` and `|` (line breaks and
tabs become spaces); attribute values escape `\\`, and write tab, CR and LF as `\\t`, `\\r`, `\\n`, so a
value never contains the delimiter.

Attributes: devTime + devTimeFormat (occurred, ms precision), cat (action), sev, usrName (actor), resource,
outcome, seq, eventId, tenant, recordedAt (RFC 3339, microseconds), details (JSON), entryHash, and when the
entry's event carried a trace context traceId and spanId; for an entry that records where its event came
from (format v2), subject and publishedBy (who may publish there, comma-separated).
"""

from __future__ import annotations

from switchyard.audit.chain import timestamp
from switchyard.audit.export.record import PRODUCT, VENDOR, VERSION, Record, utc

DELIMITER = "\t"
DEV_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"


def header_escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("\r", " ")
        .replace("\n", " ")
        .replace("\t", " ")
    )


def value_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


def encode(record: Record, *, details: str | None = None) -> str:
    header = ["LEEF:2.0", VENDOR, PRODUCT, VERSION, record.action]
    occurred = utc(record.occurred_at)
    pairs = [
        ("devTime", occurred.strftime("%Y-%m-%dT%H:%M:%S.") + f"{occurred.microsecond // 1000:03d}+0000"),
        ("devTimeFormat", DEV_TIME_FORMAT),
        ("cat", record.action),
        ("sev", "6" if record.failed else "3"),
        ("usrName", record.actor),
        ("resource", record.resource),
        ("outcome", record.outcome),
        ("seq", str(record.seq)),
        ("eventId", record.event_id),
        ("tenant", record.tenant_id),
        ("recordedAt", timestamp(record.recorded_at)),
        ("details", record.details if details is None else details),
        ("entryHash", record.entry_hash),
    ]
    trace = record.trace()
    if trace is not None:
        pairs += [("traceId", trace[0]), ("spanId", trace[1])]
    published = record.published()
    if published is not None:
        pairs += [("subject", published[0]), ("publishedBy", published[1])]
    attrs = DELIMITER.join(f"{k}={value_escape(v)}" for k, v in pairs)
    return "|".join(header_escape(h) for h in header) + "|x09|" + attrs


_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(_UNESCAPE.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def parse(text: str) -> tuple[list[str], dict[str, str]]:
    """(header fields, attributes) of a LEEF 2.0 record written by `encode`."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text) and len(fields) < 6:
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if ch == "|":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if len(fields) != 6 or fields[0] != "LEEF:2.0" or fields[5] != "x09":
        raise ValueError("not a LEEF 2.0 record with a tab delimiter")
    attrs: dict[str, str] = {}
    for part in text[i:].split(DELIMITER):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"not a key=value attribute: {part[:40]!r}")
        attrs[key] = _unescape(value)
    return fields, attrs
