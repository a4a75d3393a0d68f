"""`switchyard db downgrade`: one service's schema back to a revision, shown first and done only with
`--yes`. `switchyard db current`: each service's revision and head.

A migration whose downgrade drops tables that hold data says so (`DOWNGRADE_DROPS`, its tables): the audit
ledger's entries, Merkle nodes, signed checkpoints, archives, export positions and digest keys; billing's
usage entries, aggregates, alerts and webhooks; the gateway's organisations, users and keys; the
classifier's stored features of opted-in tenants' tasks. Going past one
while they hold rows is refused unless `--drop-data` says it is meant: a tamper-evident ledger must not lose
its history by a typo, nor an invoice its charges. So are the columns a downgrade drops
(`DOWNGRADE_DROPS_COLUMNS`: "table.column" and the value that means nothing, the default it was added with
or None): a key's policy, scopes and ancestors, a charge's cache counts, key and policy version. A column
is counted as holding data where a row has a value other than NULL, JSON null and that default."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Text,
    case,
    cast,
    column,
    func,
    inspect,
    select,
    table,
    text,
)

from switchyard.cli import database
from switchyard.cli.errors import CommandError
from switchyard.common.db import DowngradeRefused, Migrations

BASE = "base"  # before the service's first migration: every table of it dropped


@dataclass(frozen=True, slots=True)
class Step:
    revision: str
    down_to: str
    title: str
    drops: tuple[str, ...]
    columns: tuple[tuple[str, object], ...] = ()  # ("table.column", the value that holds nothing)


@dataclass(frozen=True, slots=True)
class Plan:
    service: str
    current: str
    target: str
    steps: tuple[Step, ...]

    @property
    def drops(self) -> tuple[str, ...]:
        return tuple(name for step in self.steps for name in step.drops)

    @property
    def columns(self) -> tuple[tuple[str, object], ...]:
        return tuple(found for step in self.steps for found in step.columns)


def _rows(name: str, count: int) -> str:
    """A table's rows, or a column's ("table.column") rows holding a value."""
    valued = " with a value" if "." in name else ""
    return f"{name} ({count} row{'' if count == 1 else 's'}{valued})"


def _title(doc: str | None) -> str:
    """A migration's first paragraph on one line, cut short."""
    words = " ".join((doc or "").split())
    return words if len(words) <= 100 else words[:99].rstrip() + "…"


def service_migrations(owners: list[Migrations], service: str) -> Migrations:
    for migrations in owners:
        if migrations.service == service:
            return migrations
    names = ", ".join(m.service for m in owners)
    raise CommandError(f"no service {service}: the services with tables are {names}")


def plan(migrations: Migrations, *, current: str | None, target: str) -> Plan:
    """The steps from `current` down to `target`, or why there are none to take (a `CommandError`)."""
    service = migrations.service
    history = migrations.history()  # head first, one line of revisions
    order = [script.revision for script in history]
    if target != BASE and target not in order:
        raise CommandError(
            f"no revision {target} of {service}: its revisions are {', '.join(reversed(order))}"
        )
    if current is None:
        raise CommandError(f"{service} has no schema in this database: nothing to downgrade")
    if current not in order:
        raise CommandError(
            f"{service} is at {current}, which this release does not know: "
            "downgrade with the release that made it"
        )
    start = order.index(current)
    end = len(order) if target == BASE else order.index(target)
    if end < start:
        raise CommandError(
            f"{target} is above {service}'s current revision {current}: `switchyard db upgrade` goes up"
        )
    steps = tuple(
        Step(
            revision=script.revision,
            down_to=str(script.down_revision or BASE),
            title=_title(script.doc),
            drops=tuple(getattr(script.module, "DOWNGRADE_DROPS", ())),
            columns=tuple(getattr(script.module, "DOWNGRADE_DROPS_COLUMNS", {}).items()),
        )
        for script in history[start:end]
    )
    return Plan(service=service, current=current, target=target, steps=steps)


def rows_held(conn: Connection, found: Plan, *, lock: bool = False) -> dict[str, int]:
    """The rows in each table the plan drops that exists, and in each column it drops that exists the
    rows holding a value. `lock`: PostgreSQL keeps every writer out of their tables until the transaction
    ends, so none writes a row between this count and the drop."""
    seen = inspect(conn)
    present = [name for name in found.drops if seen.has_table(name)]
    valued: dict[str, list[tuple[str, ColumnElement[bool]]]] = {}
    for name, empty in found.columns:
        owner, _, col = name.partition(".")
        if owner in present or not seen.has_table(owner):
            continue  # its table is dropped whole (its rows counted), or not there
        types = {c["name"]: c["type"] for c in seen.get_columns(owner)}
        if col in types:
            valued.setdefault(owner, []).append((name, _holds(col, types[col], empty)))
    locked = [*present, *valued]
    if lock and locked and conn.dialect.name == "postgresql":
        conn.execute(text(f"LOCK TABLE {', '.join(locked)} IN ACCESS EXCLUSIVE MODE"))
    held = {
        name: conn.execute(select(func.count()).select_from(table(name))).scalar_one() for name in present
    }
    for owner, checks in valued.items():  # one scan of each table for all of its columns
        counts = select(*(func.count(case((cond, 1))) for _, cond in checks)).select_from(table(owner))
        held.update(zip((name for name, _ in checks), conn.execute(counts).one(), strict=True))
    return held


def _holds(name: str, type_: Any, empty: object) -> ColumnElement[bool]:
    """A row's value in this column is data: not NULL, not JSON null, not the value that means nothing."""
    col = column(name, type_)
    cond: ColumnElement[bool] = col.is_not(None)
    if isinstance(type_, JSON):
        cond = cond & (cast(col, Text) != "null")
    if empty is not None:
        cond = cond & (col != empty)
    return cond


def refuse_dropping_data(plan: Plan, held: dict[str, int]) -> None:
    lost = [_rows(name, count) for name, count in held.items() if count]
    if lost:
        raise CommandError(
            f"refused: taking {plan.service} to {plan.target} drops {', '.join(lost)} with their data; "
            "restore a backup instead (docs/operations/upgrades.md, Rolling back), "
            "or add --drop-data if that is meant"
        )


def describe(plan: Plan, held: dict[str, int]) -> list[str]:
    lines = [f"{plan.service}: {plan.current} -> {plan.target}, {len(plan.steps)} step(s):"]
    for step in plan.steps:
        names = [*step.drops, *(name for name, _ in step.columns)]
        dropped = ", ".join(_rows(name, held.get(name, 0)) for name in names)
        lines.append(f"  {step.revision} -> {step.down_to}: undo {step.title}")
        if dropped:
            lines.append(f"    drops {dropped}")
    return lines


def _read(
    conn: Connection, migrations: Migrations, target: str, drop_data: bool
) -> tuple[Plan, dict[str, int]]:
    found = plan(migrations, current=migrations.current(conn), target=target)
    held = rows_held(conn, found)
    if not drop_data:
        refuse_dropping_data(found, held)
    return found, held


async def _look(
    url: str, migrations: Migrations, target: str, drop_data: bool
) -> tuple[Plan, dict[str, int]]:
    engine = database.engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read, migrations, target, drop_data)
    finally:
        await engine.dispose()


def downgrade(url: str, migrations: Migrations, *, target: str, yes: bool, drop_data: bool) -> int:
    found, held = asyncio.run(_look(url, migrations, target, drop_data))
    if found.current == target:
        print(f"{found.service} is at {target} already: nothing to do")
        return 0
    print("\n".join(describe(found, held)))
    if not yes:
        print("dry run: nothing changed; add --yes to do it")
        return 0

    def again(conn: Connection) -> None:
        """The same checks in the downgrade's own transaction, the tables locked: what was shown holds."""
        now = plan(migrations, current=migrations.current(conn), target=target)
        if now.current != found.current:
            raise CommandError(
                f"{found.service} moved to {now.current} meanwhile: nothing changed, run it again"
            )
        if not drop_data:
            refuse_dropping_data(now, rows_held(conn, now, lock=True))

    try:
        asyncio.run(migrations.downgrade(url, target, pgbouncer=database.pgbouncer(), first=again))
    except DowngradeRefused as exc:  # a step that cannot keep what the database holds (e.g. bi0011)
        raise CommandError(f"{exc}: nothing changed") from exc
    print(f"{found.service} is at {target} now")
    return 0


def _revisions(conn: Connection, owners: list[Migrations]) -> list[tuple[str, str | None, str, bool]]:
    found = []
    for migrations in owners:
        history = migrations.history()
        known = {script.revision for script in history}
        current = migrations.current(conn)
        found.append((migrations.service, current, history[0].revision, current is None or current in known))
    return found


async def _current(url: str, owners: list[Migrations]) -> list[tuple[str, str | None, str, bool]]:
    engine = database.engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_revisions, owners)
    finally:
        await engine.dispose()


def current(url: str, owners: list[Migrations]) -> int:
    for service, revision, head, known in asyncio.run(_current(url, owners)):
        if revision == head:
            print(f"{service} {revision} (head)")
        elif not known:
            print(f"{service} {revision} (not in this release: head {head}, a later release's?)")
        else:
            print(f"{service} {revision or 'none'} (head {head}, `switchyard db upgrade` to reach it)")
    return 0
