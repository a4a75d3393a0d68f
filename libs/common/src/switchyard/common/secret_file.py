"""A secret kept in a file that the first of the processes sharing it makes (the embedded run's var dir)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def make_once(path: Path) -> None:
    """Makes `path` (0600) with a new random secret unless it exists: written whole under another name and
    linked into place, so a process starting beside this one reads either none or all of it, and one of
    them wins. OSError when it cannot be made."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    try:
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs
            os.link(draft, path)
    finally:
        draft.unlink()
