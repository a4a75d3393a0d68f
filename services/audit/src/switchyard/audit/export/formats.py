"""Turning a record into the bytes one destination takes: a syslog frame, a JSON line, or a HEC event.

An entry whose encoding exceeds the maximum size is sent with its details replaced by their size and
SHA-256 (`{"details_bytes": n, "details_sha256": "..", "truncated": true}`): the SIEM still gets the entry,
its seq and hash, and the full entry is one proof request away. Nothing is dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from switchyard.audit.chain import canonical_json
from switchyard.audit.export import cef, leef, structured, syslog
from switchyard.audit.export.record import Record, utc

FORMATS = ("cef", "leef", "ocsf", "ecs")
FRAMINGS = ("syslog", "line", "hec")
DEFAULT_MAX_BYTES = 64 * 1024


class TooLarge(ValueError):
    pass


def truncated_details(record: Record) -> str:
    raw = record.details.encode("utf-8")
    return canonical_json(
        {"details_bytes": len(raw), "details_sha256": hashlib.sha256(raw).hexdigest(), "truncated": True}
    )


def _text(fmt: str) -> Callable[[Record, str | None], str]:
    if fmt == "cef":
        return lambda r, d: cef.encode(r, details=d)
    if fmt == "leef":
        return lambda r, d: leef.encode(r, details=d)
    mapping = structured.ocsf if fmt == "ocsf" else structured.ecs
    return lambda r, d: orjson.dumps(mapping(r, details=None if d is None else orjson.loads(d))).decode()


def _object(fmt: str, record: Record, details: str | None) -> Any:
    if fmt in ("ocsf", "ecs"):
        mapping = structured.ocsf if fmt == "ocsf" else structured.ecs
        return mapping(record, details=None if details is None else orjson.loads(details))
    return _text(fmt)(record, details)


@dataclass(frozen=True)
class Encoder:
    fmt: str
    framing: str
    hostname: str = "-"
    sd_id: str = syslog.DEFAULT_SD_ID
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown format {self.fmt!r}: one of {', '.join(FORMATS)}")
        if self.framing not in FRAMINGS:
            raise ValueError(f"unknown framing {self.framing!r}")

    def encode(self, record: Record) -> bytes:
        out = self._encode(record, None)
        if len(out) > self.max_bytes:
            out = self._encode(record, truncated_details(record))
            if len(out) > self.max_bytes:
                raise TooLarge(
                    f"entry {record.seq} does not fit in {self.max_bytes} bytes even without details"
                )
        if self.framing == "syslog":
            return syslog.frame(out)
        return out

    def _encode(self, record: Record, details: str | None) -> bytes:
        if self.framing == "syslog":
            body = _text(self.fmt)(record, details)
            return syslog.message(record, body, hostname=self.hostname, sd_id=self.sd_id)
        if self.framing == "line":
            return _text(self.fmt)(record, details).encode("utf-8") + b"\n"
        fields: dict[str, Any] = {"seq": record.seq, "tenant": record.tenant_id, "event_id": record.event_id}
        trace = record.trace()
        if trace is not None:
            fields["trace_id"] = trace[0]
        event = {
            "time": round(utc(record.recorded_at).timestamp(), 6),
            "host": self.hostname,
            "source": "switchyard:ledger",
            "sourcetype": f"switchyard:{self.fmt}",
            "event": _object(self.fmt, record, details),
            "fields": fields,
        }
        return orjson.dumps(event)
