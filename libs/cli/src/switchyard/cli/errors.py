"""What a command refuses on its input or its environment: `main` prints it as one line (`switchyard: ...`)
and exits 2, where an exception of ours would be a stack trace."""

from __future__ import annotations

import os
from pathlib import Path

from switchyard.common.db import is_sqlite


class CommandError(Exception):
    """The command cannot do what was asked; its message says why, in one line."""


def existing_database(url: str, *, given: bool) -> str:
    """`url`, when it names a database that is there. A SQLite file that is not is named instead of opened:
    opening it made its directory and an empty database (a mistyped --database-url or SWITCHYARD_VAR_DIR
    then read as "no such table"). `given`: the URL came from --database-url."""
    if not is_sqlite(url):
        return url
    path = url.split("///", 1)[-1]
    if not path or path == ":memory:" or Path(path).exists():
        return url
    if given:
        origin = "--database-url"
    elif os.environ.get("SWITCHYARD_DATABASE_URL"):
        origin = "SWITCHYARD_DATABASE_URL"
    else:
        var_dir = os.environ.get("SWITCHYARD_VAR_DIR", "var")
        origin = f"SWITCHYARD_VAR_DIR={var_dir}: the one `switchyard up` ran with?"
    raise CommandError(f"no database at {path} ({origin})")
