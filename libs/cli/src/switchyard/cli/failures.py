"""What the `switchyard` command says, in one line, of an error that is the user's to fix (a file that is
not there, a URL that is not one, a database or server that cannot be reached) instead of a traceback.
Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import socket
import sys

from switchyard.common.errors import ConfigurationError

# A file the command was given (or its settings name) that is not there or not readable.
FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
# SQLSTATE classes of a database that refuses the connection: connection exception, invalid
# authorization (a wrong password, a role that does not exist), invalid catalog name (no such database).
REFUSED_STATES = ("08", "28", "3D")


def user_problem(exc: BaseException) -> tuple[str, int] | None:
    """(what to print, exit code) for an error of the user's environment; None for a bug."""
    if isinstance(exc, ConfigurationError):  # a missing or invalid policy, classifier artifact, model file
        return str(exc), 2
    if isinstance(exc, FILE_ERRORS) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}", 2
    if isinstance(exc, ConnectionError | socket.gaierror):  # a database or server not listening there
        return f"cannot connect: {exc}", 1
    return _database_problem(exc)


def _database_problem(exc: BaseException) -> tuple[str, int] | None:
    found = sys.modules.get("sqlalchemy.exc")  # loaded when the error is one of its own
    if found is None:
        return None
    if isinstance(exc, found.ArgumentError):  # never the URL itself: it may hold a password
        return f"not a database URL ({exc})", 2
    if isinstance(exc, found.DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(state, str) and state[:2] in REFUSED_STATES:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
            return f"the database refused the connection: {reason}", 1
    return None
