"""A PostgreSQL cluster of the suite's own, for a session (tests/conftest.py) or for one test that stops
and starts it under a running service."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from switchyard.cli.processes import PostgresCluster


@contextmanager
def started_cluster() -> Iterator[PostgresCluster]:
    """A cluster started in a directory of its own (not under pytest's tmp dir: that one is private to
    root and the server runs as `postgres`), stopped (unless a test left it stopped) and removed after."""
    if not PostgresCluster.available():
        pytest.fail("PostgreSQL binaries not found: `make test` installs them (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="switchyard-pg-"))
    cluster = PostgresCluster(base).start()
    try:
        yield cluster
    finally:
        if (cluster.data_dir / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
