"""What the `switchyard` command says, in one line, of an error that is the user's to fix (a file that is
not there, a URL that is not one, a database or server that cannot be reached, a disk that is full)
instead of a traceback, never a URL's password. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import errno
import socket
import sys

from switchyard.common.errors import ConfigurationError
from switchyard.common.logs import redact

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
        return f"cannot connect: {redact(str(exc))}", 1
    if isinstance(exc, OSError) and exc.errno is not None:  # what the system said, not our code
        return _system_problem(exc)
    return _database_problem(exc)


def _system_problem(exc: OSError) -> tuple[str, int]:
    """A file named that the system refuses otherwise (a name too long, a read-only file system): exit 2,
    as one not there. With no file (a disk full, found at the write after the open; a host no route
    reaches): what the system said, and exit 1, as a server not listening. An OSError without an errno is
    raised by code, not the system: a bug, kept out of here (`user_problem` gives None)."""
    if exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}", 2
    name = errno.errorcode.get(exc.errno or 0, f"errno {exc.errno}")
    return f"{redact(exc.strerror or str(exc))} ({name})", 1


def database_refusal(exc: BaseException, doing: str) -> str:
    """One line for a database error met `doing` (reading the ledger, billing's tables): what to do
    next depends on why. A table that is not there: the schema was never made (`db upgrade`). A table the
    role may not read: the services' role was never granted it (`ledger app-role`, as the tables' owner).
    Anything else: what the database said."""
    orig = getattr(exc, "orig", None) or exc
    said = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    state = _sqlstate(orig)
    if state == "42P01" or said.startswith("no such table"):  # PostgreSQL's undefined_table; SQLite's words
        return f"cannot {doing} ({said}); has `switchyard db upgrade` run?"
    if state == "42501":  # insufficient_privilege
        return (
            f"cannot {doing} ({said}): this role was not granted the tables; run `switchyard ledger "
            "app-role --role ROLE` as the tables' owner (services/audit/README.md)"
        )
    return f"cannot {doing} ({redact(said)})"


def _sqlstate(orig: object) -> str | None:
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state if isinstance(state, str) else None


def _database_problem(exc: BaseException) -> tuple[str, int] | None:
    found = sys.modules.get("sqlalchemy.exc")  # loaded when the error is one of its own
    if found is None:
        return None
    if isinstance(exc, found.ArgumentError):  # never the URL itself: it may hold a password
        return f"not a database URL ({exc})", 2
    if isinstance(exc, found.DBAPIError):
        state = _sqlstate(exc.orig)
        if state is not None and state[:2] in REFUSED_STATES:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
            return f"the database refused the connection: {reason}", 1
    return None
