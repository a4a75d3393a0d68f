"""RFC 5424 syslog messages in RFC 6587 octet-counted frames (the framing RFC 5425 uses over TLS). Pure.

    <PRI>1 TIMESTAMP HOSTNAME switchyard - MSGID [switchyard@32473 seq="N" event_id=".." tenant=".."
        entry_hash=".." trace_id=".."] BOM MSG

PRI is facility 13 (log audit) with severity 6 (informational) or 4 (warning, a failure). TIMESTAMP is the
entry's recorded_at; MSGID its action (printable ASCII, at most 32). The SD-ID's number is IANA's example
enterprise number (RFC 5612) unless configured. SD values escape `"`, `\\` and `]`. MSG is UTF-8 with a
BOM, as RFC 5424 asks. `trace_id` is there when the entry's event carried a trace context. A frame is
`<byte length> SP <message>`: the count is of UTF-8 bytes.
"""

from __future__ import annotations

from switchyard.audit.chain import timestamp
from switchyard.audit.export.record import Record

FACILITY_AUDIT = 13
SEVERITY_INFO = 6
SEVERITY_WARNING = 4
APP_NAME = "switchyard"
DEFAULT_SD_ID = "switchyard@32473"
BOM = "\ufeff"
NIL = "-"


def printable(value: str, limit: int) -> str:
    """PRINTUSASCII (33..126) only, as HOSTNAME/APP-NAME/MSGID require; NILVALUE when nothing is left."""
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in value)[:limit]
    return cleaned or NIL


def sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def message(record: Record, body: str, *, hostname: str, sd_id: str = DEFAULT_SD_ID) -> bytes:
    severity = SEVERITY_WARNING if record.failed else SEVERITY_INFO
    pri = FACILITY_AUDIT * 8 + severity
    params = [
        ("seq", str(record.seq)),
        ("event_id", record.event_id),
        ("tenant", record.tenant_id),
        ("entry_hash", record.entry_hash),
    ]
    trace = record.trace()
    if trace is not None:
        params.append(("trace_id", trace[0]))
    published = record.published()
    if published is not None:
        params += [("subject", published[0]), ("published_by", published[1])]
    sd = "[" + sd_id + "".join(f' {k}="{sd_escape(v)}"' for k, v in params) + "]"
    head = (
        f"<{pri}>1 {timestamp(record.recorded_at)} {printable(hostname, 255)} {APP_NAME} {NIL} "
        f"{printable(record.action, 32)} {sd} "
    )
    return (head + BOM + body).encode("utf-8")


def frame(msg: bytes) -> bytes:
    """RFC 6587 octet counting: the length in bytes, a space, the message."""
    return str(len(msg)).encode("ascii") + b" " + msg


def read_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Splits octet-counted frames off `data`; returns (messages, the incomplete rest)."""
    out: list[bytes] = []
    while data:
        space = data.find(b" ")
        if space <= 0:
            break
        length = int(data[:space])
        end = space + 1 + length
        if len(data) < end:
            break
        out.append(data[space + 1 : end])
        data = data[end:]
    return out, data
