"""Signed checkpoints, proofs, verification, retention and reports on real SQLite and PostgreSQL, including
what an attacker with database access does: rewrite an entry and re-chain every hash after it, cut off the
tail, forge or re-sign a checkpoint."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchyard.audit import checkpoints, merkle, proofs, retention
from switchyard.audit.chain import EntryFields, entry_bytes, entry_hash, leaf_hash
from switchyard.audit.db import migrations
from switchyard.audit.models import LedgerEntry
from switchyard.audit.proof_check import CheckFailed, check_checkpoint, check_document
from switchyard.audit.report import compliance_report
from switchyard.audit.signing import Signer, parse_private_key, signer_from
from switchyard.audit.verify import verify_ledger
from switchyard.common.db import create_engine, sessionmaker
from tests.support.ledger import fill

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]
ORIGIN = "ledger.test/acme"
COPY = "root_hash, created_at, origin, key_id, public_key, signature, note"


def _signer(seed: str = "33" * 32) -> Signer:
    return signer_from(parse_private_key(seed.encode()), origin=ORIGIN)


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[tuple[AsyncEngine, Sessions]]:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    try:
        yield engine, sessionmaker(engine)
    finally:
        await engine.dispose()


async def _sql(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _drop_all_guards(engine: AsyncEngine) -> None:
    if engine.dialect.name == "postgresql":
        await _sql(
            engine,
            "DROP TRIGGER ledger_entries_no_update_delete ON ledger_entries",
            "DROP TRIGGER ledger_entries_extend_head ON ledger_entries",
            "DROP TRIGGER merkle_nodes_no_update_delete ON merkle_nodes",
            "DROP TRIGGER ledger_checkpoints_no_update_delete ON ledger_checkpoints",
        )
    else:
        await _sql(
            engine,
            *(
                f"DROP TRIGGER {t}"
                for t in (
                    "ledger_entries_no_update",
                    "ledger_entries_no_delete",
                    "ledger_entries_extend_head",
                    "merkle_nodes_no_delete",
                    "ledger_checkpoints_no_update",
                    "ledger_checkpoints_no_delete",
                )
            ),
        )


async def _rewrite_and_rechain(engine: AsyncEngine, sessions: Sessions, seq: int) -> None:
    """Rewrites entry `seq` and re-chains every hash after it: every row is self-consistent again."""
    async with sessions() as session:
        table = LedgerEntry.__table__
        rows = (await session.execute(select(table).order_by(table.c.seq))).mappings().all()
    prev = rows[seq - 2]["entry_hash"]
    async with engine.begin() as conn:
        for r in rows[seq - 1 :]:
            fields = EntryFields(**{k: r[k] for k in EntryFields.__slots__})
            if fields.seq == seq:
                fields = EntryFields(
                    **{
                        **{k: r[k] for k in EntryFields.__slots__},
                        "outcome": "success",
                        "actor": "user:innocent",
                    }
                )
            digest = entry_hash(fields, prev)
            await conn.execute(
                text(
                    "UPDATE ledger_entries SET actor=:a, outcome=:o, prev_hash=:p, entry_hash=:h WHERE seq=:s"
                ),
                {"a": fields.actor, "o": fields.outcome, "p": prev, "h": digest, "s": fields.seq},
            )
            prev = digest


async def _two_checkpoints(sessions: Sessions, signer: Signer) -> None:
    await fill(sessions, 1, 300)
    assert (await checkpoints.make_checkpoint(sessions, signer=signer)).tree_size == 300  # type: ignore[union-attr]
    assert await checkpoints.make_checkpoint(sessions, signer=signer) is None  # nothing new to sign
    await fill(sessions, 301, 377)
    assert (await checkpoints.make_checkpoint(sessions, signer=signer)).tree_size == 377  # type: ignore[union-attr]


async def test_proofs_verify_offline_and_tampering_is_caught(ledger: tuple[AsyncEngine, Sessions]) -> None:
    _, sessions = ledger
    signer = _signer()
    await _two_checkpoints(sessions, signer)
    cache = proofs.NodeCache()
    for seq in (1, 2, 150, 256, 300, 301, 377):
        doc = await proofs.inclusion(sessions, seq=seq, cache=cache)
        assert doc["tree_size"] == 377 and check_document(doc, trusted=signer.key).pinned
        if seq <= 300:
            old = await proofs.inclusion(sessions, seq=seq, tree_size=300)
            check_document(orjson.loads(orjson.dumps(old)), trusted=signer.key)
    consistency = await proofs.consistency(sessions, first=300, second=377)
    assert "is a prefix of checkpoint 377" in check_document(consistency, trusted=signer.key).summary
    # Any change to a proof, an entry or a signature, or the wrong key, is refused.
    doc = await proofs.inclusion(sessions, seq=42)
    bad_proof = {
        **doc,
        "proof": [("0" if doc["proof"][0][0] != "0" else "1") + doc["proof"][0][1:], *doc["proof"][1:]],
    }
    bad_entry = {**doc, "entry": doc["entry"][:-4] + "AAA="}
    bad_note = {
        **doc,
        "checkpoint": {**doc["checkpoint"], "note": doc["checkpoint"]["note"].replace("\n377\n", "\n376\n")},
    }
    relabelled = {**doc, "tenant_id": "acme"}  # entry 42 is globex's: a label must be the entry's own
    for forged in (bad_proof, bad_entry, bad_note, relabelled):
        with pytest.raises(CheckFailed):
            check_document(forged, trusted=signer.key)
    with pytest.raises(CheckFailed):
        check_document(doc, trusted=_signer("44" * 32).key)
    with pytest.raises(proofs.Forbidden):
        await proofs.inclusion(sessions, seq=3, tenant_id="acme")  # entry 3 belongs to globex
    assert (await proofs.inclusion(sessions, seq=4, tenant_id="acme"))["tenant_id"] == "acme"
    with pytest.raises(proofs.NotFound):
        await proofs.inclusion(sessions, seq=378)
    report = await verify_ledger(sessions, trusted=[signer.key])
    assert report.ok and report.checkpoints == 2 and report.keys_pinned and not report.notes


async def test_checkpoints_are_append_only_and_only_grow(ledger: tuple[AsyncEngine, Sessions]) -> None:
    engine, sessions = ledger
    signer = _signer()
    await _two_checkpoints(sessions, signer)
    for statement in (
        "UPDATE ledger_checkpoints SET root_hash = 'x' WHERE tree_size = 300",
        "DELETE FROM ledger_checkpoints WHERE tree_size = 377",
        "DELETE FROM merkle_nodes WHERE level = 0 AND idx = 5",
        "UPDATE merkle_nodes SET hash = hash WHERE level = 1",
        f"INSERT INTO ledger_checkpoints SELECT 200, {COPY} FROM ledger_checkpoints WHERE tree_size = 300",
        f"INSERT INTO ledger_checkpoints SELECT 999, {COPY} FROM ledger_checkpoints WHERE tree_size = 300",
    ):
        with pytest.raises(DBAPIError):
            await _sql(engine, statement)


async def test_a_rechained_rewrite_and_a_cut_tail_are_caught_by_the_checkpoints(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    """The hash chain alone cannot see either: the attacker recomputes every later hash, or cuts the end."""
    engine, sessions = ledger
    signer = _signer()
    await _two_checkpoints(sessions, signer)
    await _drop_all_guards(engine)
    await _sql(engine, "DELETE FROM ledger_entries WHERE seq > 350")
    problem = (await verify_ledger(sessions, trusted=[signer.key])).problem
    assert problem is not None and problem.seq == 351 and "removed from the tail" in problem.reason
    await _rewrite_and_rechain(engine, sessions, 120)
    report = await verify_ledger(sessions, trusted=[signer.key])
    assert report.problem is not None and report.problem.seq == 300
    assert "checkpoint 300" in report.problem.reason and "root differs" in report.problem.reason
    assert report.entries == 0  # no checkpoint before it vouches for any entry


async def test_a_checkpoint_kept_outside_catches_what_the_database_hides(
    ledger: tuple[AsyncEngine, Sessions], db_url: str, tmp_path: Path
) -> None:
    """An attacker with the database (and, in the embedded run, the signing key beside it in var/) rewrites
    an entry, re-chains every later hash and removes (or re-signs) the checkpoints: the ledger alone then
    verifies. A checkpoint an auditor saved before, passed to `ledger verify --checkpoint`, catches it."""
    engine, sessions = ledger
    signer = _signer()
    await _two_checkpoints(sessions, signer)
    saved = tmp_path / "checkpoint-300.json"
    saved.write_bytes(orjson.dumps(await proofs.checkpoint(sessions, size=300)))
    tail, _ = check_checkpoint(await proofs.checkpoint(sessions, size=377), signer.key)
    await _drop_all_guards(engine)
    await _sql(engine, "DELETE FROM ledger_checkpoints")
    await _rewrite_and_rechain(engine, sessions, 120)
    assert (await verify_ledger(sessions, trusted=[signer.key])).ok  # all the database can say
    command = [sys.executable, "-m", "switchyard.cli.main", "ledger", "verify", "--database-url", db_url]
    command += ["--verifier-key", signer.key.text(), "--checkpoint", str(saved)]
    cli = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "BROKEN at seq 300" in cli.stderr and "the checkpoint you saved" in cli.stderr, cli.stderr
    assert "root differs" in cli.stderr and "an entry in 1..300" in cli.stderr
    await _sql(engine, "DELETE FROM ledger_entries WHERE seq > 350")
    problem = (await verify_ledger(sessions, trusted=[signer.key], saved=[tail])).problem
    assert problem is not None and problem.seq == 351 and "removed from the tail" in problem.reason


async def test_forged_and_foreign_checkpoints_are_caught(ledger: tuple[AsyncEngine, Sessions]) -> None:
    engine, sessions = ledger
    await _two_checkpoints(sessions, _signer())
    # Signed by a key we do not trust (an attacker who re-signed with their own key).
    report = await verify_ledger(sessions, trusted=[_signer("55" * 32).key])
    assert report.problem is not None and "not a trusted key" in report.problem.reason
    await _drop_all_guards(engine)
    await _sql(
        engine,
        "UPDATE ledger_checkpoints SET note = REPLACE(note, 'time 20', 'time 19') WHERE tree_size = 377",
    )
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and problem.seq == 377 and "signature does not verify" in problem.reason


async def test_nodes_are_backfilled_for_a_ledger_written_before_the_tree(db_url: str) -> None:
    await migrations().upgrade(db_url, "au0001")
    engine = create_engine(db_url)
    leaves = []
    try:
        prev = "0" * 64
        async with engine.begin() as conn:
            for seq in range(1, 38):
                fields = EntryFields(
                    seq,
                    f"old-{seq}",
                    datetime(2026, 1, 1, tzinfo=UTC),
                    datetime(2026, 1, 1, tzinfo=UTC),
                    "acme",
                    "a",
                    "task.submit",
                    "r",
                    "success",
                    '{"n":1}',
                )
                digest = entry_hash(fields, prev)
                leaves.append(leaf_hash(entry_bytes(fields)))
                await conn.execute(
                    text(
                        "INSERT INTO ledger_entries VALUES (:seq,:event_id,:recorded_at,:occurred_at,"
                        ":tenant_id,:actor,:action,:resource,:outcome,:details,:prev,:digest)"
                    ),
                    {
                        **{k: getattr(fields, k) for k in EntryFields.__slots__},
                        "prev": prev,
                        "digest": digest,
                    },
                )
                prev = digest
        await migrations().upgrade(db_url)
        sessions = sessionmaker(engine)
        made = await checkpoints.make_checkpoint(sessions, signer=_signer())
        assert made is not None and made.root_hash == merkle.root(leaves).hex()
        await fill(sessions, 38, 40)  # appends extend the backfilled tree
        assert (await verify_ledger(sessions)).ok
    finally:
        await engine.dispose()


async def test_retention_archives_with_proofs_and_never_deletes(
    ledger: tuple[AsyncEngine, Sessions], tmp_path: Path
) -> None:
    _, sessions = ledger
    signer = _signer()
    await _two_checkpoints(sessions, signer)
    now = datetime.now(UTC)
    with pytest.raises(retention.RetentionViolation):
        await retention.archive(sessions, before=now, out_dir=tmp_path, retention_days=90)
    with pytest.raises(retention.RetentionViolation):
        await retention.archive(
            sessions, before=now - timedelta(days=40), out_dir=tmp_path, retention_days=30
        )
    later = now + timedelta(days=91)
    done = await retention.archive(
        sessions, before=later - timedelta(days=90), out_dir=tmp_path, retention_days=90, now=later
    )
    assert done is not None and (done.first_seq, done.last_seq, done.checkpoint_size) == (1, 377, 377)
    lines = done.path.read_bytes().splitlines()
    header = orjson.loads(lines[0])
    assert len(lines) == 378
    for line in lines[1::50]:
        doc = {
            "format": proofs.INCLUSION_FORMAT,
            **orjson.loads(line),
            "checkpoint": header["checkpoint"],
            "tree_size": 377,
        }
        check_document(doc, trusted=signer.key)
    assert (
        await retention.archive(
            sessions, before=later - timedelta(days=90), out_dir=tmp_path, retention_days=90, now=later
        )
        is None
    )
    assert (await verify_ledger(sessions)).entries == 377  # archived entries stay in the ledger


async def test_compliance_report(ledger: tuple[AsyncEngine, Sessions]) -> None:
    _, sessions = ledger
    await _two_checkpoints(sessions, _signer())
    doc = await compliance_report(
        sessions,
        tenant_id="globex",
        start=datetime(2026, 1, 1, tzinfo=UTC),
        end=datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert doc["entries"] == 377 // 3
    assert sum(sum(c.values()) for c in doc["by_action"].values()) == doc["entries"]
    assert doc["failures"]["total"] == len([n for n in range(3, 378, 3) if n % 11 == 0])
    assert doc["admin_changes"]["total"] == len([n for n in range(3, 378, 3) if n % 4 == 3])
    assert all(e["action"] == "key.create" for e in doc["admin_changes"]["entries"])
    assert doc["verification"]["ok"] and doc["verification"]["checkpoints_verified"] == 2
