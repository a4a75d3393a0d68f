"""The ledger on real SQLite and PostgreSQL: appends, idempotency, the database's refusals, and verification
catching rows altered, deleted, reordered or inserted behind the application's back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from switchyard.audit.chain import EntryFields, entry_hash
from switchyard.audit.db import migrations
from switchyard.audit.entries import EntryDraft
from switchyard.audit.models import LedgerEntry
from switchyard.audit.report import compliance_report
from switchyard.audit.service import Unwritable, append_entries, head
from switchyard.audit.verify import verify_ledger
from switchyard.audit.writer import LedgerWriter
from switchyard.common.db import create_engine, sessionmaker

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def draft(n: int, **changes: object) -> EntryDraft:
    values: dict[str, object] = {
        "event_id": f"evt-{n:04d}",
        "occurred_at": T0 + timedelta(milliseconds=n),
        "tenant_id": "acme",
        "actor": "api_key:k1",
        "action": "task.submit",
        "resource": f"task/t{n}",
        "outcome": "success",
        "details": {"task_id": f"t{n}", "latency_ms": 12.5 + n, "naïve": "ünïcode ✓", "tokens": n},
    }
    values.update(changes)
    return EntryDraft(**values)  # type: ignore[arg-type]


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[tuple[AsyncEngine, Sessions]]:
    await migrations().upgrade(db_url)
    engine = create_engine(db_url)
    try:
        yield engine, sessionmaker(engine)
    finally:
        await engine.dispose()


async def _fill(sessions: Sessions, n: int) -> None:
    await append_entries(sessions, drafts=[draft(i) for i in range(1, n + 1)])


async def _sql(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _drop_guards(engine: AsyncEngine) -> None:
    """What an attacker with database access does first: remove the triggers."""
    names = ("ledger_entries_no_update", "ledger_entries_no_delete", "ledger_entries_extend_head")
    if engine.dialect.name == "postgresql":
        names = ("ledger_entries_no_update_delete", "ledger_entries_extend_head")
        await _sql(engine, *(f"DROP TRIGGER {n} ON ledger_entries" for n in names))
    else:
        await _sql(engine, *(f"DROP TRIGGER {n}" for n in names))


async def test_appends_are_gapless_linked_and_verify(ledger: tuple[AsyncEngine, Sessions]) -> None:
    _, sessions = ledger
    first = await append_entries(sessions, drafts=[draft(1), draft(2), draft(3)])
    assert [a.seq for a in first] == [1, 2, 3] and all(a.created for a in first)
    for i in (4, 5):
        (one,) = await append_entries(sessions, drafts=[draft(i)])
        assert one.seq == i
    report = await verify_ledger(sessions, page=2)  # several pages
    assert report.ok and report.entries == 5
    assert (report.head_seq, report.head_hash) == await head(sessions)


async def test_an_event_is_recorded_once_however_often_it_arrives(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    engine, sessions = ledger
    await append_entries(sessions, drafts=[draft(1), draft(2)])
    again = await append_entries(
        sessions, drafts=[draft(2), draft(3), draft(3), draft(1, actor="someone else")]
    )
    assert [(a.seq, a.created) for a in again] == [(2, False), (3, True), (3, True), (1, False)]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT COUNT(*) FROM ledger_entries"))).scalar_one() == 3
    assert (await verify_ledger(sessions)).ok


async def test_concurrent_writers_never_fork_the_chain(
    ledger: tuple[AsyncEngine, Sessions], db_url: str
) -> None:
    """Two replicas (separate engines) append at once, with overlapping events: one chain, each event once."""
    _, sessions = ledger
    other = create_engine(db_url)
    try:
        replica = sessionmaker(other)
        batches = [[draft(i) for i in range(start, start + 5)] for start in range(1, 60, 5)]
        jobs = [append_entries(s, drafts=b) for b in batches for s in (sessions, replica)]
        await asyncio.gather(*jobs)
    finally:
        await other.dispose()
    report = await verify_ledger(sessions)
    assert report.ok and report.entries == 60


async def test_the_database_refuses_update_and_delete(ledger: tuple[AsyncEngine, Sessions]) -> None:
    engine, sessions = ledger
    await _fill(sessions, 3)
    for statement in (
        "UPDATE ledger_entries SET outcome = 'failure' WHERE seq = 2",
        "UPDATE ledger_entries SET seq = seq + 10",
        "DELETE FROM ledger_entries WHERE seq = 3",
        "DELETE FROM ledger_entries",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            await _sql(engine, statement)
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            await _sql(engine, "TRUNCATE ledger_entries")
    assert (await verify_ledger(sessions)).entries == 3


async def test_the_database_refuses_an_insert_that_does_not_extend_the_head(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    engine, sessions = ledger
    await _fill(sessions, 2)
    _, head_hash = await head(sessions)
    row = "'x', '2026-11-22 09:30:00', '2026-11-22 09:30:00', 'acme', 'a', 'x', 'r', 'success', '{}'"
    for seq, prev in ((5, head_hash), (3, "0" * 64), (2, head_hash)):
        with pytest.raises(DBAPIError):
            await _sql(engine, f"INSERT INTO ledger_entries VALUES ({seq}, {row}, '{prev}', '{'f' * 64}')")


def _cli_verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchyard.cli.main", "ledger", "verify", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_ledger_verify_command_passes_then_names_an_altered_entry(
    ledger: tuple[AsyncEngine, Sessions], db_url: str
) -> None:
    engine, sessions = ledger
    await _fill(sessions, 6)
    ok = await asyncio.to_thread(_cli_verify, db_url)
    _, head_hash = await head(sessions)
    assert ok.returncode == 0, ok.stderr
    assert "ledger intact: 6 entries" in ok.stdout and head_hash in ok.stdout

    await _drop_guards(engine)
    await _sql(engine, "UPDATE ledger_entries SET details = replace(details, 't4', 't0') WHERE seq = 4")
    bad = await asyncio.to_thread(_cli_verify, db_url)
    assert bad.returncode == 1
    assert "BROKEN at seq 4 (event evt-0004)" in bad.stderr and "altered" in bad.stderr


async def test_ledger_verify_with_missing_merkle_nodes_says_damaged_as_its_exit_code_does(
    ledger: tuple[AsyncEngine, Sessions], db_url: str
) -> None:
    """The entries verify but the stored tree that serves proofs lacks nodes: it printed "ledger intact"
    (with a warning) and exited 1."""
    engine, sessions = ledger
    await _fill(sessions, 6)
    if engine.dialect.name == "postgresql":
        await _sql(engine, "DROP TRIGGER merkle_nodes_no_update_delete ON merkle_nodes")
    else:
        await _sql(engine, "DROP TRIGGER merkle_nodes_no_delete")
    await _sql(engine, "DELETE FROM merkle_nodes WHERE level = 2")
    damaged = await asyncio.to_thread(_cli_verify, db_url)
    assert damaged.returncode == 1
    assert "intact" not in damaged.stdout + damaged.stderr.split("\n", 1)[0], damaged
    assert damaged.stderr.startswith("ledger DAMAGED: the stored Merkle nodes are incomplete"), damaged.stderr
    assert "the entries verify (6 entries" in damaged.stderr
    # the compliance report says the same (it said ok, and `ledger report` exited 0)
    period = {"start": T0 - timedelta(days=1), "end": T0 + timedelta(days=1)}
    verification = (await compliance_report(sessions, tenant_id="acme", **period))["verification"]
    assert verification["ok"] is False and "incomplete" in verification["notes"][0]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("outcome", "'failure'"),
        ("actor", "'api_key:k2'"),
        ("tenant_id", "'other'"),
        ("event_id", "'evt-9999'"),
        ("occurred_at", "'2020-01-01 00:00:00'"),
        ("recorded_at", "'2020-01-01 00:00:00'"),
        ("details", "'{}'"),
        ("resource", "'task/other'"),
        ("action", "'task.fail'"),
    ],
)
async def test_verify_names_an_altered_column(
    ledger: tuple[AsyncEngine, Sessions], column: str, value: str
) -> None:
    engine, sessions = ledger
    await _fill(sessions, 5)
    await _drop_guards(engine)
    await _sql(engine, f"UPDATE ledger_entries SET {column} = {value} WHERE seq = 3")
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and problem.seq == 3 and "altered" in problem.reason


async def test_verify_catches_an_altered_entry_whose_hash_was_recomputed(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    engine, sessions = ledger
    await _fill(sessions, 5)
    await _drop_guards(engine)
    forged = await _rehash(engine, 3, outcome="failure")
    await _sql(
        engine, f"UPDATE ledger_entries SET outcome = 'failure', entry_hash = '{forged}' WHERE seq = 3"
    )
    report = await verify_ledger(sessions)
    assert report.problem is not None and (report.problem.seq, report.problem.event_id) == (4, "evt-0004")
    assert "prev_hash does not link to entry 3" in report.problem.reason and report.entries == 3


async def test_verify_names_the_entry_after_a_deleted_one(ledger: tuple[AsyncEngine, Sessions]) -> None:
    engine, sessions = ledger
    await _fill(sessions, 5)
    await _drop_guards(engine)
    await _sql(engine, "DELETE FROM ledger_entries WHERE seq = 2")
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and (problem.seq, problem.event_id) == (3, "evt-0003")
    assert "entry 2 is missing" in problem.reason


async def test_verify_catches_a_deleted_and_renumbered_entry(ledger: tuple[AsyncEngine, Sessions]) -> None:
    engine, sessions = ledger
    await _fill(sessions, 5)
    await _drop_guards(engine)
    await _sql(
        engine,
        "DELETE FROM ledger_entries WHERE seq = 2",
        "UPDATE ledger_entries SET seq = seq - 1 WHERE seq > 2",
    )
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and (problem.seq, problem.event_id) == (2, "evt-0003")


async def test_verify_catches_reordered_entries(ledger: tuple[AsyncEngine, Sessions]) -> None:
    engine, sessions = ledger
    await _fill(sessions, 5)
    await _drop_guards(engine)
    await _sql(
        engine,
        "UPDATE ledger_entries SET seq = 100 WHERE seq = 2",
        "UPDATE ledger_entries SET seq = 2 WHERE seq = 3",
        "UPDATE ledger_entries SET seq = 3 WHERE seq = 100",
    )
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and (problem.seq, problem.event_id) == (2, "evt-0003")


async def test_verify_catches_an_entry_inserted_in_the_middle(ledger: tuple[AsyncEngine, Sessions]) -> None:
    """A forged row linked to its predecessor; the rows after it renumbered and its successor re-linked (the
    seq primary key allows nothing less): the successor's hash no longer matches its contents."""
    engine, sessions = ledger
    await _fill(sessions, 5)
    await _drop_guards(engine)
    prev = await _scalar(engine, "SELECT entry_hash FROM ledger_entries WHERE seq = 2")
    fields = _forged(3)
    forged_hash = entry_hash(fields, prev)
    await _sql(
        engine,
        "UPDATE ledger_entries SET seq = seq + 100 WHERE seq >= 3",
        "UPDATE ledger_entries SET seq = seq - 99 WHERE seq >= 100",
        f"UPDATE ledger_entries SET prev_hash = '{forged_hash}' WHERE seq = 4",
    )
    await _insert(engine, fields, prev, forged_hash)
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and (problem.seq, problem.event_id) == (4, "evt-0003")


async def test_verify_names_an_inserted_entry_that_does_not_link(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    engine, sessions = ledger
    await _fill(sessions, 5)
    await _drop_guards(engine)
    await _sql(
        engine,
        "UPDATE ledger_entries SET seq = seq + 100 WHERE seq >= 3",
        "UPDATE ledger_entries SET seq = seq - 99 WHERE seq >= 100",
    )
    fields = _forged(3)
    await _insert(engine, fields, "cd" * 32, entry_hash(fields, "cd" * 32))
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and (problem.seq, problem.event_id) == (3, "forged")
    assert "prev_hash does not link to entry 2" in problem.reason


def _forged(seq: int) -> EntryFields:
    return EntryFields(
        seq=seq,
        event_id="forged",
        recorded_at=T0,
        occurred_at=T0,
        tenant_id="acme",
        actor="x",
        action="task.submit",
        resource="task/forged",
        outcome="success",
        details="{}",
    )


async def test_verify_catches_an_entry_appended_directly(ledger: tuple[AsyncEngine, Sessions]) -> None:
    engine, sessions = ledger
    await _fill(sessions, 3)
    await _drop_guards(engine)
    _, prev = await head(sessions)
    await _insert(engine, _forged(4), prev, "ab" * 32)
    problem = (await verify_ledger(sessions)).problem
    assert (
        problem is not None
        and (problem.seq, problem.event_id) == (4, "forged")
        and "altered" in problem.reason
    )


async def _scalar(engine: AsyncEngine, query: str) -> str:
    async with engine.connect() as conn:
        return str((await conn.execute(text(query))).scalar_one())


async def _rehash(engine: AsyncEngine, seq: int, **changes: str) -> str:
    async with sessionmaker(engine)() as session:
        row = await session.get_one(LedgerEntry, seq)
    values = {name: getattr(row, name) for name in EntryFields.__slots__} | changes
    return entry_hash(EntryFields(**values), row.prev_hash)


async def _insert(engine: AsyncEngine, fields: EntryFields, prev: str, digest: str) -> None:
    values = {name: getattr(fields, name) for name in EntryFields.__slots__} | {
        "prev_hash": prev,
        "entry_hash": digest,
    }
    names = ", ".join(values)
    async with engine.begin() as conn:
        await conn.execute(
            text(f"INSERT INTO ledger_entries ({names}) VALUES ({', '.join(':' + n for n in values)})"),
            values,
        )


async def test_the_writer_batches_concurrent_appends_once(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    _, sessions = ledger
    writer = LedgerWriter(sessions, max_batch=50)
    writer.start()
    try:
        drafts = [draft(i) for i in range(1, 301)]
        results = await asyncio.gather(*(writer.append(d) for d in drafts + drafts[:40]))
    finally:
        await writer.stop()
    assert sorted(r.seq for r in results[:300]) == list(range(1, 301))
    assert [r.created for r in results[300:]] == [False] * 40
    assert [r.seq for r in results[300:]] == [r.seq for r in results[:40]]
    report = await verify_ledger(sessions)
    assert report.ok and report.entries == 300


async def test_writers_that_remember_their_head_stay_correct_when_another_appends(
    ledger: tuple[AsyncEngine, Sessions], db_url: str
) -> None:
    """Each writer skips its reads while its remembered head holds. A replica's appends make it stale, and a
    redelivered event is already stored: the database refuses the insert, the writer reads and retries."""
    _, sessions = ledger
    other = create_engine(db_url)
    mine, theirs = LedgerWriter(sessions), LedgerWriter(sessionmaker(other))
    mine.start()
    theirs.start()
    try:
        results = []
        for start in range(1, 41, 5):  # alternate: each batch finds the other's appends in between
            writer = mine if start % 2 else theirs
            batch = [draft(i) for i in range(start, start + 5)]
            results += await asyncio.gather(*(writer.append(d) for d in batch))
        again = await asyncio.gather(*(mine.append(draft(i)) for i in (3, 8, 41)))  # two were stored
    finally:
        await mine.stop()
        await theirs.stop()
        await other.dispose()
    assert [r.seq for r in results] == list(range(1, 41)) and all(r.created for r in results)
    assert [(a.seq, a.created) for a in again] == [(3, False), (8, False), (41, True)]
    report = await verify_ledger(sessions)
    assert report.ok and report.entries == 41


async def test_a_lingering_writer_commits_drafts_arriving_apart_in_one_transaction(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    _, sessions = ledger
    batches: list[int] = []
    writer = LedgerWriter(sessions, linger_s=0.3, on_appended=batches.append)
    writer.start()
    try:

        async def later(n: int) -> object:
            await asyncio.sleep(0.02 * n)  # a task's events arrive a few milliseconds apart
            return await writer.append(draft(n))

        results = await asyncio.gather(*(later(n) for n in range(1, 7)))
    finally:
        await writer.stop()
    assert batches == [6]  # one transaction, not six
    assert sorted(r.seq for r in results) == list(range(1, 7))  # type: ignore[attr-defined]
    assert (await verify_ledger(sessions)).ok


async def test_verify_names_a_row_that_cannot_even_be_read(ledger: tuple[AsyncEngine, Sessions]) -> None:
    engine, sessions = ledger
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL refuses a malformed timestamp itself")
    await _fill(sessions, 4)
    await _drop_guards(engine)
    await _sql(engine, "UPDATE ledger_entries SET occurred_at = 'yesterday-ish' WHERE seq = 3")
    problem = (await verify_ledger(sessions)).problem
    assert problem is not None and (problem.seq, problem.event_id) == (3, "evt-0003")
    assert "cannot be read" in problem.reason


async def test_an_entry_the_database_rejects_does_not_hold_back_its_batch(
    ledger: tuple[AsyncEngine, Sessions],
) -> None:
    engine, sessions = ledger
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce column lengths")
    writer = LedgerWriter(sessions)
    writer.start()
    try:
        results = await asyncio.gather(
            *(writer.append(draft(i, tenant_id="x" * 100 if i == 3 else "acme")) for i in range(1, 6)),
            return_exceptions=True,
        )
    finally:
        await writer.stop()
    assert isinstance(results[2], Unwritable) and not results[2].retryable
    assert [r.event_id for r in results if not isinstance(r, BaseException)] == [
        "evt-0001",
        "evt-0002",
        "evt-0004",
        "evt-0005",
    ]
    assert (await verify_ledger(sessions)).entries == 4
