"""ArcSight Common Event Format (CEF:0), encoding and parsing. Pure.

    CEF:0|Switchyard|Switchyard|0.1.0|<action>|<action> <outcome>|<severity>| <extension>

Header fields escape `\\` and `|` with a backslash (and carry no line breaks); extension values escape `\\`
and `=`, and write CR/LF as `\\r`/`\\n`. A space follows the last header `|`: CEF parsers skip it, and
liblognorm (rsyslog's mmnormalize) otherwise drops the first character of the first key.

Extension: rt (recorded, ms since epoch), start (occurred), act, outcome, suser (actor), externalId (event
id), cn1 seq, cs1 tenant, cs2 resource, cs3 details (JSON), cs4 entry hash, and when the entry's event
carried a trace context cs5 trace id and cs6 span id; for an entry that records where its event came from
(format v2), flexString1 its subject and flexString2 who may publish there (`service:router`,
`integrator:<tenant token>`...); each csN/cnN/flexStringN with its label.
"""

from __future__ import annotations

import re

from switchyard.audit.export.record import PRODUCT, VENDOR, VERSION, Record, epoch_ms

KEY = re.compile(r"^[A-Za-z0-9_]+$")
NEXT_KEY = re.compile(r" ?([A-Za-z0-9_]+)=")
SEVERITY_OK = 3
SEVERITY_FAILED = 6


def header_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def value_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def extension(pairs: list[tuple[str, str]]) -> str:
    for key, _ in pairs:
        if not KEY.match(key):
            raise ValueError(f"not a CEF extension key: {key!r}")
    return " ".join(f"{k}={value_escape(v)}" for k, v in pairs)


def encode(record: Record, *, details: str | None = None) -> str:
    header = [
        "CEF:0",
        header_escape(VENDOR),
        header_escape(PRODUCT),
        header_escape(VERSION),
        header_escape(record.action),
        header_escape(f"{record.action} {record.outcome}"),
        str(SEVERITY_FAILED if record.failed else SEVERITY_OK),
    ]
    pairs = [
        ("rt", str(epoch_ms(record.recorded_at))),
        ("start", str(epoch_ms(record.occurred_at))),
        ("act", record.action),
        ("outcome", record.outcome),
        ("suser", record.actor),
        ("externalId", record.event_id),
        ("cn1Label", "seq"),
        ("cn1", str(record.seq)),
        ("cs1Label", "tenant"),
        ("cs1", record.tenant_id),
        ("cs2Label", "resource"),
        ("cs2", record.resource),
        ("cs3Label", "details"),
        ("cs3", record.details if details is None else details),
        ("cs4Label", "entryHash"),
        ("cs4", record.entry_hash),
    ]
    trace = record.trace()
    if trace is not None:
        pairs += [("cs5Label", "traceId"), ("cs5", trace[0]), ("cs6Label", "spanId"), ("cs6", trace[1])]
    published = record.published()
    if published is not None:
        pairs += [
            ("flexString1Label", "subject"),
            ("flexString1", published[0]),
            ("flexString2Label", "publishedBy"),
            ("flexString2", published[1]),
        ]
    return "|".join(header) + "| " + extension(pairs)


def _split_header(text: str) -> tuple[list[str], str]:
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text) and len(fields) < 7:
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
    if len(fields) != 7 or not fields[0].startswith("CEF:"):
        raise ValueError("not a CEF record (seven |-separated header fields)")
    return fields, text[i:]


_UNESCAPE = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


def parse(text: str) -> tuple[list[str], dict[str, str]]:
    """(header fields, extension) of a CEF record: the inverse of `encode`."""
    header, rest = _split_header(text)
    ext: dict[str, str] = {}
    key: str | None = None
    value: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        m = NEXT_KEY.match(rest, i) if key is None or rest[i] == " " else None
        if m is not None:
            if key is not None:
                ext[key] = "".join(value)
            key, value, i = m.group(1), [], m.end()
            continue
        ch = rest[i]
        if ch == "\\" and i + 1 < n:
            value.append(_UNESCAPE.get(rest[i + 1], rest[i + 1]))
            i += 2
            continue
        value.append(ch)
        i += 1
    if key is not None:
        ext[key] = "".join(value)
    return header, ext
