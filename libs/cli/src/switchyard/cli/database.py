"""The engine a command opens: the database settings of its environment (`SWITCHYARD_DATABASE_*`), as the
services have them, so a command reaches PostgreSQL the way they do (through PgBouncer, say)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.common.config import CommonSettings
from switchyard.common.db import create_engine


def engine(url: str) -> AsyncEngine:
    return create_engine(url, **CommonSettings().db_options())


def pgbouncer() -> bool:
    return CommonSettings().database_pgbouncer
