"""The PostgreSQL application role: full use of the other tables, but only SELECT and INSERT on the ledger.

Run the migrations as the database owner, then `switchyard ledger app-role --role switchyard_app` as that
owner and let the services connect as that role. Even if someone with the owner's rights drops the
append-only triggers, the role the services use is refused UPDATE, DELETE and TRUNCATE on the ledger by the
privilege system.

The owner of a managed database usually may not create roles: a DBA makes the role (`CREATE ROLE
switchyard_app LOGIN PASSWORD ...`) and the owner grants it; an existing role is only altered when a
password is given or it cannot log in. The grants also become the default privileges of the tables' owner,
so a table that a later `switchyard db upgrade` adds is the role's from the moment it is made (before, the
services failed on it until someone ran this again); run it again after each upgrade all the same, so a
new ledger table loses UPDATE and DELETE.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from switchyard.common.errors import ConfigurationError

APPEND_ONLY = ("ledger_entries", "merkle_nodes", "ledger_checkpoints", "ledger_archives")
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
INSUFFICIENT_PRIVILEGE = "42501"


def _checked(*names: str) -> None:
    if not all(ROLE_NAME.match(name) for name in names):
        raise ConfigurationError(f"role and schema names must match {ROLE_NAME.pattern}")


def login_statement(role: str, *, password: str | None = None) -> str:
    """Creates the role; alters an existing one only when there is something to change."""
    _checked(role)
    login = "LOGIN"
    if password is not None:
        login += " PASSWORD '" + password.replace("'", "''") + "'"
    change = "TRUE" if password is not None else "NOT r.rolcanlogin"
    return f"""DO $$ DECLARE r pg_roles%ROWTYPE; BEGIN
          SELECT * INTO r FROM pg_roles WHERE rolname = '{role}';
          IF NOT FOUND THEN CREATE ROLE {role} {login};
          ELSIF {change} THEN ALTER ROLE {role} {login}; END IF;
        END $$"""


def app_role_statements(role: str, *, owner: str, schema: str = "public") -> list[str]:
    """The grants, as `owner` (the owner of Switchyard's tables: the role `switchyard db upgrade` ran as)."""
    _checked(role, owner, schema)
    tables = ", ".join(f"{schema}.{t}" for t in APPEND_ONLY)
    defaults = f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT"
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"{defaults} SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"{defaults} USAGE, SELECT ON SEQUENCES TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {tables} FROM {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {tables} FROM PUBLIC",
    ]


def _refused(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE


async def _tables_owner(conn: AsyncConnection, schema: str) -> str:
    owner = await conn.scalar(
        text("SELECT tableowner FROM pg_tables WHERE schemaname = :schema AND tablename = 'ledger_entries'"),
        {"schema": schema},
    )
    if owner is None:
        raise ConfigurationError(f"no ledger in schema {schema}: run `switchyard db upgrade` first")
    return str(owner)


async def grant_app_role(
    engine: AsyncEngine, *, role: str, password: str | None = None, schema: str = "public"
) -> None:
    if engine.dialect.name != "postgresql":
        raise ConfigurationError("application roles are a PostgreSQL feature (SQLite relies on its triggers)")
    async with engine.begin() as conn:
        owner = await _tables_owner(conn, schema)
        me = str(await conn.scalar(text("SELECT current_user")))
        try:
            await conn.execute(text(login_statement(role, password=password)))
        except DBAPIError as exc:
            if not _refused(exc):
                raise
            raise ConfigurationError(
                f"{me} may not create or alter role {role} (that needs CREATEROLE): have a DBA run "
                f"`CREATE ROLE {role} LOGIN PASSWORD '...'`, then run this again as {owner}, without "
                "--password-env"
            ) from None
        try:
            for statement in app_role_statements(role, owner=owner, schema=schema):
                await conn.execute(text(statement))
        except DBAPIError as exc:
            if not _refused(exc):
                raise
            raise ConfigurationError(
                f"{me} may not grant {role} the use of Switchyard's tables: run this as their owner, {owner} "
                "(the role `switchyard db upgrade` runs as)"
            ) from None
