"""The PostgreSQL application role: full use of the other tables, but only SELECT and INSERT on the ledger.

Run the migrations as the database owner, then `switchyard ledger app-role --role switchyard_app` and let
the services connect as that role. Even if someone with the owner's rights drops the append-only triggers,
the role the services use is refused UPDATE, DELETE and TRUNCATE on the ledger by the privilege system.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from switchyard.common.errors import ConfigurationError

APPEND_ONLY = ("ledger_entries", "merkle_nodes", "ledger_checkpoints", "ledger_archives")
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def app_role_statements(role: str, *, password: str | None = None, schema: str = "public") -> list[str]:
    if not ROLE_NAME.match(role) or not ROLE_NAME.match(schema):
        raise ConfigurationError(f"role and schema names must match {ROLE_NAME.pattern}")
    login = "LOGIN"
    if password is not None:
        login += " PASSWORD '" + password.replace("'", "''") + "'"
    tables = ", ".join(f"{schema}.{t}" for t in APPEND_ONLY)
    return [
        f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} {login};
              ELSE ALTER ROLE {role} {login}; END IF;
            END $$""",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {tables} FROM {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {tables} FROM PUBLIC",
    ]


async def grant_app_role(engine: AsyncEngine, *, role: str, password: str | None = None) -> None:
    if engine.dialect.name != "postgresql":
        raise ConfigurationError("application roles are a PostgreSQL feature (SQLite relies on its triggers)")
    async with engine.begin() as conn:
        for statement in app_role_statements(role, password=password):
            await conn.execute(text(statement))
