"""A database the command cannot use, on a real PostgreSQL: a database or role that does not exist, a port
nothing listens on, a URL that is not one. Each is one line naming the command, never a traceback and
never the URL's password (before: `db upgrade` ended in a traceback for each, `ledger verify` for the
last two)."""

from __future__ import annotations

import pytest

from switchyard.cli.main import main
from switchyard.cli.processes import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", [["db", "upgrade"], ["ledger", "verify"]])
def test_a_database_that_cannot_be_used_is_one_line(
    command: list[str], postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base, _, _ = postgres_url.rpartition("/")
    scheme, _, rest = base.partition("://")
    address = rest.partition("@")[2]
    cases = [
        (f"{base}/no_such_db", 'database "no_such_db" does not exist'),
        (f"{scheme}://nobody:s3cret-pw@{address}/x", 'role "nobody" does not exist'),
        (f"{scheme}://postgres:s3cret-pw@127.0.0.1:{free_port()}/x", "cannot connect: "),
        ("postgres-at-localhost:s3cret-pw", "not a database URL"),
    ]
    for url, said in cases:
        code = main([*command, "--database-url", url])
        err = capsys.readouterr().err
        assert code in (1, 2), (url, err)
        assert said in err, (url, err)
        assert len(err.strip().splitlines()) == 1, err
        assert "s3cret-pw" not in err
