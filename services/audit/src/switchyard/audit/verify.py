"""Verifying the ledger: every seq in order from 1, every link, every hash, the tree, every checkpoint.

Finds an altered row (its contents no longer give its hash), a removed one (a gap in seq, or a broken
link), reordered rows (seq is inside the hashed bytes, and links break) and inserted ones (a forged hash,
or a link that does not match), and names the first bad entry. The Merkle root recomputed from the entries
must equal every signed checkpoint's root at its size, and a checkpoint larger than the ledger means the
tail was cut off: the hash chain alone cannot see that.

Whoever can rewrite the database can also delete its checkpoints (and, holding the signing key, re-sign
them), so the ledger alone then verifies. Checkpoints kept outside (`saved`, already checked against a
trusted key) close that: the root recomputed at each one's size must be its root, and the ledger must reach
it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import ColumnElement, String, inspect, null, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from switchyard.audit import tree
from switchyard.audit.chain import GENESIS_HASH, EntryFields, chain_hash, entry_bytes, leaf_hash
from switchyard.audit.merkle import hash_children
from switchyard.audit.models import Checkpoint, LedgerEntry
from switchyard.audit.note import CheckpointBody, NoteError, VerifierKey, parse_body, split_note
from switchyard.audit.service import TreeIncomplete, node_hashes

PAGE = 5000
COLUMNS = (*EntryFields.__slots__, "prev_hash", "entry_hash")


@dataclass(frozen=True, slots=True)
class Row:
    fields: EntryFields
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int
    event_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    entries: int  # entries verified intact (before the problem, if any)
    head_seq: int
    head_hash: str
    problem: Problem | None = None
    checkpoints: int = 0  # checkpoints whose signature and root verified
    saved: int = 0  # checkpoints kept outside whose root the ledger still gives
    root_hash: str = ""  # the Merkle root of the verified entries
    keys_pinned: bool = False  # signatures checked against trusted keys (not only the stored ones)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


class ChainVerifier:
    """Feed rows in seq order; the first problem stops verification."""

    def __init__(
        self,
        checkpoints: Sequence[Checkpoint] = (),
        trusted: Sequence[VerifierKey] = (),
        saved: Sequence[CheckpointBody] = (),
    ) -> None:
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.problem: Problem | None = None
        self._stack: list[tuple[int, bytes]] = []  # perfect subtrees of the verified prefix
        self._checkpoints = sorted(checkpoints, key=lambda c: c.tree_size)
        self._next = 0
        self._trusted = {(k.name, k.key_id): k for k in trusted}
        self.verified_checkpoints = 0
        self._good: int | None = None  # set when a checkpoint fails: entries up to the last good one
        self._checkpoint_at = self._next_size()
        self._saved = sorted(saved, key=lambda c: c.tree_size)
        self.verified_saved = 0

    def feed(self, row: Row) -> Problem | None:
        if self.problem is not None:
            return self.problem
        leaf = leaf_hash(entry_bytes(row.fields))
        self.problem = self._check(row, leaf)
        if self.problem is None:
            self.expected_seq += 1
            self.prev_hash = row.entry_hash
            size, node = 1, leaf
            stack = self._stack
            while stack and stack[-1][0] == size:
                left_size, left = stack.pop()
                size, node = left_size + size, hash_children(left, node)
            stack.append((size, node))
            if row.fields.seq == self._checkpoint_at:
                self._at_checkpoint(row)
            if self.problem is None:
                self._at_saved(row)
        return self.problem

    def _at_saved(self, row: Row) -> None:
        saved = self._saved
        while self.verified_saved < len(saved) and saved[self.verified_saved].tree_size == row.fields.seq:
            body = saved[self.verified_saved]
            if self.root() != body.root_hash:
                self.problem = Problem(
                    row.fields.seq,
                    row.fields.event_id,
                    f"the checkpoint you saved of size {body.tree_size} "
                    f"(signed {body.time:%Y-%m-%d %H:%M:%S}): "
                    f"its root differs from the root recomputed now: an entry in 1..{body.tree_size} was "
                    "changed and every later hash recomputed (and the ledger's own checkpoints removed or "
                    "re-signed) to hide it",
                )
                vouched = [c.tree_size for c in self._checkpoints[: self._next]]
                vouched += [c.tree_size for c in saved[: self.verified_saved]]
                # a stored checkpoint of the same size that verified was re-signed over the rewrite
                self._good = max((n for n in vouched if n < body.tree_size), default=0)
                return
            self.verified_saved += 1

    def _good_size(self) -> int:
        return self._checkpoints[self._next - 1].tree_size if self._next else 0

    def _next_size(self) -> int:
        return self._checkpoints[self._next].tree_size if self._next < len(self._checkpoints) else 0

    def _at_checkpoint(self, row: Row) -> None:
        while self._next_size() == row.fields.seq:
            self.problem = self._checkpoint(self._checkpoints[self._next], row.fields.event_id)
            if self.problem is not None:
                self._good = self._good_size()
                return
            self._next += 1
            self.verified_checkpoints += 1
        self._checkpoint_at = self._next_size()

    def _check(self, row: Row, leaf: bytes) -> Problem | None:
        seq, event_id = row.fields.seq, row.fields.event_id
        if seq != self.expected_seq:
            if seq > self.expected_seq:
                missing = (
                    f"entry {self.expected_seq} is missing"
                    if seq == self.expected_seq + 1
                    else f"entries {self.expected_seq}..{seq - 1} are missing"
                )
                return Problem(
                    seq, event_id, f"{missing} (deleted or renumbered): expected seq {self.expected_seq}"
                )
            return Problem(seq, event_id, f"seq {seq} out of sequence: expected {self.expected_seq}")
        if row.prev_hash != self.prev_hash:
            before = f"entry {seq - 1}" if seq > 1 else "the genesis hash"
            return Problem(
                seq,
                event_id,
                f"prev_hash does not link to {before}: entries were inserted, removed or reordered here, "
                "or the previous entry was rewritten",
            )
        if chain_hash(self.prev_hash, leaf) != row.entry_hash:
            return Problem(
                seq, event_id, "entry_hash does not match the entry's contents: the entry was altered"
            )
        return None

    def root(self) -> bytes:
        return tree.fold([h for _, h in self._stack])

    def _checkpoint(self, cp: Checkpoint, event_id: str) -> Problem | None:
        where = f"checkpoint {cp.tree_size} (signed {cp.created_at:%Y-%m-%d %H:%M:%S})"
        reason = _signature_problem(cp, self._trusted)
        if reason is None and self.root().hex() != cp.root_hash:
            since = self._checkpoints[self._next - 1].tree_size + 1 if self._next else 1
            reason = (
                "its signed root differs from the root recomputed now: an entry in "
                f"{since}..{cp.tree_size} was changed and every later hash recomputed to hide it"
            )
        return None if reason is None else Problem(cp.tree_size, event_id, f"{where}: {reason}")

    def finish(self) -> Problem | None:
        """After the last row: a checkpoint beyond the end means entries were cut off the tail."""
        if self.problem is None and self.verified_saved < len(self._saved):
            body, head = self._saved[self.verified_saved], self.expected_seq - 1
            self.problem = Problem(
                head + 1,
                "-",
                f"the ledger ends at seq {head} but the checkpoint you saved of size {body.tree_size} "
                f"(signed {body.time:%Y-%m-%d %H:%M:%S}) covers {body.tree_size} entries: entries "
                f"{head + 1}..{body.tree_size} were removed from the tail",
            )
        if self.problem is None and self._next < len(self._checkpoints):
            cp = self._checkpoints[self._next]
            head = self.expected_seq - 1
            self.problem = Problem(
                head + 1,
                "-",
                f"the ledger ends at seq {head} but checkpoint {cp.tree_size} (signed "
                f"{cp.created_at:%Y-%m-%d %H:%M:%S}) covers {cp.tree_size} entries: entries "
                f"{head + 1}..{cp.tree_size} were removed from the tail",
            )
        return self.problem

    def report(self, notes: list[str] | None = None) -> Report:
        entries = self.expected_seq - 1 if self._good is None else self._good
        return Report(
            entries=entries,
            head_seq=entries,
            head_hash=self.prev_hash if self._good is None else "",
            problem=self.problem,
            checkpoints=self.verified_checkpoints,
            saved=self.verified_saved,
            root_hash=self.root().hex(),
            keys_pinned=bool(self._trusted),
            notes=notes or [],
        )


def _signature_problem(cp: Checkpoint, trusted: dict[tuple[str, bytes], VerifierKey]) -> str | None:
    try:
        text, signatures = split_note(cp.note)
        body: CheckpointBody = parse_body(text)
    except NoteError as exc:
        return f"its note is malformed ({exc})"
    if (body.tree_size, body.root_hash.hex(), body.origin) != (cp.tree_size, cp.root_hash, cp.origin):
        return "its columns differ from its signed note"
    stored = (cp.origin, bytes.fromhex(cp.key_id))
    if trusted and stored not in trusted:
        return f"it is signed by key {cp.key_id}, which is not a trusted key"
    public = trusted[stored].public_key if trusted else bytes.fromhex(cp.public_key)
    for name, kid, signature in signatures:
        if (name, kid) == stored:
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(signature, text.encode("utf-8"))
            except InvalidSignature:
                return "its signature does not verify"
            if base64.b64encode(signature).decode("ascii") != cp.signature:
                return "its signature column differs from its note"
            return None
    return f"its note has no signature by key {cp.key_id}"


async def verify_ledger(
    sessions: async_sessionmaker[AsyncSession],
    *,
    page: int = PAGE,
    trusted: Sequence[VerifierKey] = (),
    saved: Sequence[CheckpointBody] = (),
) -> Report:
    """Verifies every entry, link and stored checkpoint; `saved`: checkpoints kept outside, whose
    signatures the caller checked against a trusted key."""
    after = 0
    notes: list[str] = []
    async with sessions() as session:
        stored = list((await session.execute(select(Checkpoint))).scalars())
        verifier = ChainVerifier(stored, trusted, saved)
        provenance = await _has_provenance(session)
        ahead = asyncio.ensure_future(_page(session, after, page, provenance))
        while True:
            try:
                rows = await ahead
            except (ValueError, TypeError):  # a value the database holds but no writer could have written
                verifier.problem = await _unreadable(session, after, page, provenance)
                return verifier.report()
            full = len(rows) == page
            if full:  # the next page is read while this one is hashed
                after = rows[-1].fields.seq
                ahead = asyncio.ensure_future(_page(session, after, page, provenance))
            for row in rows:
                if verifier.feed(row) is not None:
                    if full:
                        ahead.cancel()
                        with contextlib.suppress(BaseException):
                            await ahead
                    return verifier.report()
            if not full:
                break
        if verifier.finish() is None:
            notes.extend(await _stored_tree_notes(session, verifier))
    return verifier.report(notes)


async def _stored_tree_notes(session: AsyncSession, verifier: ChainVerifier) -> list[str]:
    """The stored nodes serve proofs: their root must be the recomputed one (else proofs fail to verify)."""
    size = verifier.expected_seq - 1
    if size == 0:
        return []
    try:
        stored = tree.root_of(size, await node_hashes(session, set(tree.frontier(size))))
    except TreeIncomplete as exc:
        return [f"the stored Merkle nodes are incomplete ({exc.message}); proofs cannot be served"]
    if stored != verifier.root():
        return ["the stored Merkle nodes disagree with the entries; proofs served from them will not verify"]
    return []


async def _page(session: AsyncSession, after: int, limit: int, provenance: bool = True) -> list[Row]:
    """`provenance`: whether the table has the column (a database of a revision before au0006, verified
    by this release without migrating it first: every entry is then v1)."""
    table = LedgerEntry.__table__

    def column(name: str) -> ColumnElement[Any]:
        if name == "provenance" and not provenance:
            return null().label(name)
        return table.c[name]

    if session.get_bind().dialect.name != "sqlite":
        columns: list[ColumnElement[Any]] = [column(name) for name in COLUMNS]
        query = select(*columns).where(table.c.seq > after).order_by(table.c.seq).limit(limit)
        return [Row(EntryFields(*r[:-2]), r[-2], r[-1]) for r in (await session.execute(query)).all()]
    # SQLite keeps timestamps as text; the C parser is several times faster than the generic processor.
    columns = [type_coerce(table.c[n], String) if n.endswith("_at") else column(n) for n in COLUMNS]
    query = select(*columns).where(table.c.seq > after).order_by(table.c.seq).limit(limit)
    parse = datetime.fromisoformat
    return [
        Row(EntryFields(s, e, parse(r), parse(o), t, a, ac, re, ou, d, pv), p, h)
        for s, e, r, o, t, a, ac, re, ou, d, pv, p, h in (await session.execute(query)).all()
    ]


async def _has_provenance(session: AsyncSession) -> bool:
    def look(sync: Session) -> bool:
        return "provenance" in {c["name"] for c in inspect(sync.connection()).get_columns("ledger_entries")}

    return await session.run_sync(look)


async def _unreadable(session: AsyncSession, after: int, limit: int, provenance: bool) -> Problem:
    """Finds the first row of a page that cannot be read back (a column was overwritten with garbage)."""
    keys = select(LedgerEntry.seq, LedgerEntry.event_id).where(LedgerEntry.seq > after)
    for seq, event_id in (await session.execute(keys.order_by(LedgerEntry.seq).limit(limit))).all():
        try:
            await _page(session, seq - 1, 1, provenance)
        except (ValueError, TypeError) as exc:
            return Problem(seq, event_id, f"the row cannot be read back ({exc}): the entry was altered")
    raise RuntimeError("a ledger page could not be read, but each of its rows can")
