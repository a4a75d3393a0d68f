"""Checking what a SIEM received against the ledger: every entry present, each field intact."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from switchyard.audit.chain import canonical_json
from switchyard.audit.export import cef, leef
from switchyard.audit.models import LedgerEntry


def expected_details(row: LedgerEntry, got: str) -> str:
    """The details as sent: the stored JSON, or (over the frame limit) its size and hash."""
    if '"truncated":true' in got and len(row.details) > 1000:
        raw = row.details.encode("utf-8")
        return canonical_json(
            {"details_bytes": len(raw), "details_sha256": hashlib.sha256(raw).hexdigest(), "truncated": True}
        )
    return row.details


def fields_of(fmt: str, body: str) -> dict[str, str]:
    """Normalises a CEF or LEEF body to the entry's field names."""
    if fmt == "cef":
        header, ext = cef.parse(body)
        assert header[:4] == ["CEF:0", "Switchyard", "Switchyard", "0.1.0"], header
        labels = {ext[f"{k}Label"]: ext[k] for k in ("cn1", "cs1", "cs2", "cs3", "cs4")}
        return {
            "seq": labels["seq"],
            "event_id": ext["externalId"],
            "tenant_id": labels["tenant"],
            "resource": labels["resource"],
            "details": labels["details"],
            "entry_hash": labels["entryHash"],
            "actor": ext["suser"],
            "action": ext["act"],
            "outcome": ext["outcome"],
            "class": header[4],
        }
    header, attrs = leef.parse(body)
    assert header[:4] == ["LEEF:2.0", "Switchyard", "Switchyard", "0.1.0"], header
    return {
        "seq": attrs["seq"],
        "event_id": attrs["eventId"],
        "tenant_id": attrs["tenant"],
        "resource": attrs["resource"],
        "details": attrs["details"],
        "entry_hash": attrs["entryHash"],
        "actor": attrs["usrName"],
        "action": attrs["cat"],
        "outcome": attrs["outcome"],
        "class": header[4],
    }


def check_syslog(records: list[dict[str, Any]], rows: dict[int, LedgerEntry], fmt: str) -> dict[str, int]:
    """Asserts every ledger row arrived intact at least once; returns counts (received, duplicates)."""
    seen: dict[int, int] = {}
    for rec in records:
        msg = rec["msg"]
        assert msg.startswith("\ufeff"), "RFC 5424 UTF-8 MSG starts with a BOM"
        got = fields_of(fmt, msg[1:])
        seq = int(got["seq"])
        assert seq in rows, f"entry {seq} arrived but is not among the ledger rows read"
        row = rows[seq]
        sd = rec["sd"]["switchyard@32473"]
        assert (sd["seq"], sd["event_id"], sd["tenant"], sd["entry_hash"]) == (
            str(seq),
            row.event_id,
            row.tenant_id,
            row.entry_hash,
        )
        assert rec["msgid"] == row.action and rec["appname"] == "switchyard"
        assert rec["pri"] == ("108" if row.outcome == "failure" else "110")
        want = {
            "seq": str(seq),
            "event_id": row.event_id,
            "tenant_id": row.tenant_id,
            "resource": row.resource,
            "details": expected_details(row, got["details"]),
            "entry_hash": row.entry_hash,
            "actor": row.actor,
            "action": row.action,
            "outcome": row.outcome,
            "class": row.action,
        }
        assert got == want, f"entry {seq} arrived altered"
        if got["details"] == row.details:
            orjson.loads(got["details"])
        seen[seq] = seen.get(seq, 0) + 1
    missing = sorted(set(rows) - set(seen))
    assert not missing, f"{len(missing)} entries never arrived, first {missing[:5]}"
    return {"received": len(records), "duplicates": sum(n - 1 for n in seen.values())}
