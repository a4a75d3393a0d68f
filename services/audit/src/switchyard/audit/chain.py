"""The bytes of a ledger entry and the hashes that link entries into a chain.

Entry bytes (format v1) are the canonical JSON object of the entry's columns:

    {"action":…,"actor":…,"details":{…},"event_id":…,"occurred_at":…,"outcome":…,
     "recorded_at":…,"resource":…,"seq":N,"tenant_id":…,"v":1}

- keys sorted, no whitespace, UTF-8 (non-ASCII characters are written as themselves);
- timestamps are UTC RFC 3339 with microseconds and a `Z`: `2026-11-22T10:15:30.123456Z`;
- `details` is the stored `details` column embedded byte for byte (it was itself written as canonical JSON
  when the entry was made), so an entry's bytes never depend on how a reader re-serialises numbers.

Format v2 (entries of an event written since the ledger records where each came from) adds `provenance`,
the stored `provenance` column embedded byte for byte the same way, and says `"v":2`:

    {…,"occurred_at":…,"outcome":…,"provenance":{"by":[…],"subject":…},"recorded_at":…,…,"v":2}

An entry whose `provenance` is NULL is a v1 entry, its bytes exactly as before, so a ledger written before
verifies unchanged; a v2 entry whose provenance was removed (or edited) no longer gives its hash.

Each entry is a leaf of an RFC 6962/9162 Merkle tree: `leaf_hash = SHA-256(0x00 || entry bytes)`.
The chain links leaves in order: `entry_hash = SHA-256(0x02 || prev_hash || leaf_hash)`, with
`prev_hash` the previous entry's `entry_hash` (32 zero bytes before the first entry). The 0x02 prefix keeps
chain hashes apart from Merkle leaf (0x00) and node (0x01) hashes. Hashes are stored as lowercase hex.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

FORMAT_VERSION = 1
FORMAT_VERSION_PROVENANCE = 2
GENESIS_HASH = "0" * 64
LEAF_PREFIX = b"\x00"
CHAIN_PREFIX = b"\x02"


@dataclass(frozen=True, slots=True)
class EntryFields:
    """What an entry says, as stored: everything except its hashes."""

    seq: int
    event_id: str
    recorded_at: datetime
    occurred_at: datetime
    tenant_id: str
    actor: str
    action: str
    resource: str
    outcome: str
    details: str  # canonical JSON text
    provenance: str | None = None  # canonical JSON text; None: a v1 entry (written before it was recorded)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8: the form `details` is stored (and hashed) in."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def timestamp(value: datetime) -> str:
    """UTC RFC 3339 with microseconds. A naive value (SQLite returns those) is taken to be UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    if value.year < 1000:  # isoformat pads the year to four digits; strftime (the v1 definition) does not
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.isoformat(timespec="microseconds") + "Z"


def entry_bytes(entry: EntryFields) -> bytes:
    fields: dict[str, Any] = {
        "action": entry.action,
        "actor": entry.actor,
        "details": orjson.Fragment(entry.details.encode("utf-8")),
        "event_id": entry.event_id,
        "occurred_at": timestamp(entry.occurred_at),
        "outcome": entry.outcome,
        "recorded_at": timestamp(entry.recorded_at),
        "resource": entry.resource,
        "seq": entry.seq,
        "tenant_id": entry.tenant_id,
        "v": FORMAT_VERSION,
    }
    if entry.provenance is not None:
        fields["provenance"] = orjson.Fragment(entry.provenance.encode("utf-8"))
        fields["v"] = FORMAT_VERSION_PROVENANCE
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def chain_hash(prev_hash: str, leaf: bytes) -> str:
    return hashlib.sha256(CHAIN_PREFIX + bytes.fromhex(prev_hash) + leaf).hexdigest()


def entry_hash(entry: EntryFields, prev_hash: str) -> str:
    return chain_hash(prev_hash, leaf_hash(entry_bytes(entry)))
