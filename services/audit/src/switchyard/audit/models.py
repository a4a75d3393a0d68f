"""The audit ledger's tables.

Append-only (the database refuses UPDATE and DELETE): `ledger_entries` (hash-linked entries, see `chain.py`),
`merkle_nodes` (every perfect subtree hash of the entries' Merkle tree, see `tree.py`), `ledger_checkpoints`
(signed tree heads, see `note.py`) and `ledger_archives` (exports written by retention).
`siem_export_positions` is a cursor per SIEM exporter and is updated in place; `ledger_digest_keys` holds each
tenant's digest key, deleted when its organisation is erased.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, MetaData, SmallInteger, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switchyard.common.db import UTCDateTime

# SQLite only makes INTEGER PRIMARY KEY columns rowid aliases; BIGINT elsewhere.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class AuditBase(DeclarativeBase):
    metadata = MetaData()


class LedgerEntry(AuditBase):
    __tablename__ = "ledger_entries"
    # One entry per event id of each tenant (tenant-less events: "-", entries.UNKNOWN_TENANT), not per event
    # id: other systems choose the ids, and one organisation's must not keep another's events out (au0007).
    # Event id first: the writer looks its batch's ids up by it.
    __table_args__ = (Index("uq_ledger_entries_event_tenant", "event_id", "tenant_id", unique=True),)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    resource: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed byte for byte
    # where the event came from (provenance.py): canonical JSON, hashed byte for byte; NULL in entries
    # written before revision au0006 (format v1, chain.py)
    provenance: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Not indexed: the extend-the-head trigger (seq = head + 1, prev_hash = the head's entry_hash) is what
    # forbids forks, and nothing looks an entry up by its hashes (migration au0004).
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class MerkleNode(AuditBase):
    """The root of the perfect subtree over leaves [index * 2**level, (index + 1) * 2**level)."""

    __tablename__ = "merkle_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class Checkpoint(AuditBase):
    """A signed tree head: the root of the first `tree_size` entries, as a C2SP signed note."""

    __tablename__ = "ledger_checkpoints"

    tree_size: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))  # hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    origin: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[str] = mapped_column(String(8))  # hex of the signed-note key hash
    public_key: Mapped[str] = mapped_column(String(64))  # hex of the raw Ed25519 public key
    signature: Mapped[str] = mapped_column(String(128))  # base64 of the raw Ed25519 signature
    note: Mapped[str] = mapped_column(Text)  # the whole signed note, as signed


class LedgerArchive(AuditBase):
    """An export of entries (with proofs and the checkpoint they verify against) written by retention."""

    __tablename__ = "ledger_archives"

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    first_seq: Mapped[int] = mapped_column(SeqType)
    last_seq: Mapped[int] = mapped_column(SeqType)
    checkpoint_size: Mapped[int] = mapped_column(SeqType)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DigestKey(AuditBase):
    """A tenant's secret key for the keyed digests in its entries (`digests.py`). Not append-only: erasing the
    organisation deletes the key (`secret` NULL, `erased_at` set) and keeps the row, so none is made again.
    Never exported, logged or put in an event."""

    __tablename__ = "ledger_digest_keys"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ExportPosition(AuditBase):
    """How far a SIEM exporter got: every entry up to `seq` was delivered (acknowledged where possible)."""

    __tablename__ = "siem_export_positions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(SeqType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
