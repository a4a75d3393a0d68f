"""Database engines and per-service alembic migrations (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

import contextlib
import hashlib
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SAWarning
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# What a write costs in system calls. The ledger's inserts run under triggers, so SQLite keeps a statement
# journal; past 64 KiB (large batches: under load, or catching up) it spilled to a temporary file, created,
# written in 4 KiB pages and unlinked once per transaction (`temp_store=MEMORY` keeps it in memory). Pages
# are read through a memory map instead of one `pread` each (`mmap_size`: address space, not memory; the WAL
# is still read by `pread`). The ledger's write calls per request (docs/performance.md, "SQLite's
# temporary files"): 56 -> 35 at concurrency 1, 23 -> 13 at 64, ~140 -> ~35 while catching up.
SQLITE_IO_PRAGMAS = ("PRAGMA temp_store=MEMORY", "PRAGMA mmap_size=268435456")


# PostgreSQL's SQLSTATEs for "no database to talk to now": class 08 (connection exception), the server
# shutting down or restarting (57P01-57P03), out of connections (53300).
UNREACHABLE_STATES = ("57P01", "57P02", "57P03", "53300")
DRIVER_MODULES = ("asyncpg.", "sqlalchemy.pool.", "sqlalchemy.dialects.postgresql.")


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached now (a retry in a moment may succeed), not that a
    statement was wrong: a connection refused or lost, the server shutting down, no connection free. A
    connect that fails at the socket reaches us as the socket's own error (`ConnectionRefusedError`,
    `TimeoutError`): asyncpg raises it and SQLAlchemy lets it through unwrapped, so it counts when it came
    from the driver or the pool."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        return exc.connection_invalidated or state.startswith("08") or state in UNREACHABLE_STATES
    if isinstance(exc, OSError | TimeoutError):
        return any(
            str(frame.f_globals.get("__name__", "")).startswith(DRIVER_MODULES)
            for frame, _ in traceback.walk_tb(exc.__traceback__)
        )
    return False


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pgbouncer: bool = False, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys so several processes can share it.
    Statements' parameters (key hashes, prompts, emails) are never shown: not in SQLAlchemy's logging nor
    in its errors' text (`[parameters: ...]`), which a handler's error log would write out
    (`hide_parameters`; the drivers' own lines: `logs.configure_logging`).
    `pgbouncer`: PostgreSQL through a pooler in transaction mode, where each transaction may run on another
    server connection: asyncpg's statements are prepared under unique names (its `__asyncpg_stmt_N__` are
    per connection, so another client's could be there, or ours missing) and neither asyncpg nor SQLAlchemy
    caches them (`CommonSettings.database_pgbouncer`)."""
    kwargs.setdefault("hide_parameters", True)
    if is_sqlite(url):
        for pg_only in ("pool_size", "max_overflow"):
            kwargs.pop(pg_only, None)
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            for pragma in SQLITE_IO_PRAGMAS:
                cur.execute(pragma)
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("pool_pre_ping", True)
    if pgbouncer:
        url = make_url(url).update_query_dict({"prepared_statement_cache_size": "0"}).render_as_string(False)
        kwargs["connect_args"] = {
            **kwargs.get("connect_args", {}),
            "statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    return create_async_engine(url, **kwargs)


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


class Migrations:
    """One service's alembic migrations: its own script folder and version table in the shared database."""

    def __init__(self, *, service: str, script_location: Path, metadata: Any) -> None:
        self.service = service
        self.script_location = script_location
        self.metadata = metadata

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.service}"

    @property
    def lock_key(self) -> int:
        """The PostgreSQL advisory lock its migrations hold while they run (a signed 64-bit number)."""
        digest = hashlib.sha256(f"switchyard migrations {self.version_table}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def config(self, url: str) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(self.script_location))
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        cfg.attributes["switchyard_migrations"] = self
        return cfg

    async def upgrade(self, url: str, revision: str = "head", *, pgbouncer: bool = False) -> None:
        """Runs `alembic upgrade` on an async engine (the env.py of every service calls `run_env`)."""
        await self._run(url, "upgrade", revision, pgbouncer=pgbouncer)

    async def downgrade(
        self,
        url: str,
        revision: str,
        *,
        pgbouncer: bool = False,
        first: Callable[[Connection], None] | None = None,
    ) -> None:
        """Runs `alembic downgrade` to `revision`, as `upgrade` runs its command. `first` runs in the same
        transaction before it and may refuse it by raising (`switchyard db downgrade`'s checks)."""
        await self._run(url, "downgrade", revision, pgbouncer=pgbouncer, first=first)

    def history(self) -> list[Any]:
        """The revisions, head first: alembic `Script`s (`revision`, `down_revision`, `doc`, `module`)."""
        from alembic.script import ScriptDirectory

        return list(ScriptDirectory.from_config(self.config("")).walk_revisions())

    def current(self, conn: Connection) -> str | None:
        """The revision the database is at, None before the first migration."""
        from alembic.runtime.migration import MigrationContext

        context = MigrationContext.configure(conn, opts={"version_table": self.version_table})
        return context.get_current_revision()

    async def _run(
        self,
        url: str,
        direction: str,
        revision: str,
        *,
        pgbouncer: bool,
        first: Callable[[Connection], None] | None = None,
    ) -> None:
        engine = create_engine(url, pgbouncer=pgbouncer)
        try:
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Another run of this service's migrations at once (a migrate Job beside a replica that
                    # migrates at start, two operators) waits for this one, then finds nothing to do:
                    # without it both ran the first migration and one failed on what the other had made.
                    # Released with the transaction (so a pooler in transaction mode keeps it too).
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.lock_key})
                if first is not None:
                    await conn.run_sync(first)
                await conn.run_sync(self._run_sync, url, direction, revision)
        finally:
            await engine.dispose()

    def _run_sync(self, conn: Connection, url: str, direction: str, revision: str) -> None:
        from alembic import command

        cfg = self.config(url)
        cfg.attributes["connection"] = conn
        getattr(command, direction)(cfg, revision)


def run_env(context: Any) -> None:
    """The body of every service's alembic env.py: migrate on the connection `Migrations.upgrade` passed."""
    migrations: Migrations = context.config.attributes["switchyard_migrations"]
    conn = context.config.attributes["connection"]
    context.configure(
        connection=conn,
        target_metadata=migrations.metadata,
        version_table=migrations.version_table,
        render_as_batch=conn.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


class DowngradeRefused(Exception):
    """A migration's downgrade that cannot keep what the database holds says why, in one line (`switchyard
    db downgrade` prints it and changes nothing)."""


@contextlib.contextmanager
def new_primary_key(table: str) -> Iterator[None]:
    """Around a migration's `batch_alter_table(table)` that replaces the table's primary key: SQLite's
    rebuild copies the reflected table, whose columns still say the old key, and SQLAlchemy warns that the
    new one replaces it (the point), on the terminal of whoever upgrades (`make run`'s first start)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", rf"Table '_alembic_tmp_{table}' specifies columns", SAWarning)
        yield


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, written and read. PostgreSQL keeps the zone
    (`timestamptz`); SQLite stores text without one, so what it gives back is naive and is UTC here,
    never local time. A naive value written or compared is taken to be UTC too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base; each service keeps its own tables in a subclass with its own MetaData."""
