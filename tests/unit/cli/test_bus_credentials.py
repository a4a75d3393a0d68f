"""`switchyard bus credentials DIR`: a password per NATS user, kept when run again, readable only through a
folder of the owner's, and a users' file holding their bcrypt hashes and each user's rights."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import bcrypt
import pytest

from switchyard.cli import bus_credentials
from switchyard.cli.bus_permissions import INTEGRATOR, Integrator, integrator_permissions, permissions
from switchyard.cli.main import main
from switchyard.cli.nats_users import USERS
from switchyard.common import subjects

pytestmark = pytest.mark.unit

ENTRY = re.compile(r'\{user: "(?P<user>[^"]+)", password: "(?P<hash>[^"]+)"(?P<rest>.*)\}$')


def _entries(folder: Path) -> dict[str, tuple[str, str]]:
    return _entries_of((folder / bus_credentials.USERS_CONF).read_bytes())


def test_a_password_per_user_and_their_hashes(tmp_path: Path) -> None:
    folder = tmp_path / "creds"
    written = bus_credentials.write_credentials(folder)
    assert [p.name for p in written] == [
        bus_credentials.EVENT_ID_SECRET,
        *(f"{u}.password" for u in USERS),
        bus_credentials.USERS_CONF,
    ]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    entries = _entries(folder)
    assert set(entries) == set(USERS)
    passwords = set()
    for user in USERS:
        path = folder / f"{user}.password"
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        password = path.read_text().strip()
        assert len(password) >= 43  # 32 random bytes
        passwords.add(password)
        hashed, rest = entries[user]
        assert hashed.startswith("$2a$") and bcrypt.checkpw(password.encode(), hashed.encode())
        assert password not in (folder / bus_credentials.USERS_CONF).read_text()
        assert ("permissions" in rest) == (permissions(user) is not None)  # operator: everything
    assert len(passwords) == len(USERS)
    # the services' event id secret: no user's password, and in no NATS server's file
    secret = (folder / bus_credentials.EVENT_ID_SECRET).read_text().strip()
    assert len(secret) >= 43 and secret not in passwords
    assert secret not in (folder / bus_credentials.USERS_CONF).read_text()


def test_run_again_it_keeps_every_password_and_each_integrators_scope(tmp_path: Path) -> None:
    bus_credentials.write_credentials(tmp_path, integrators=[Integrator("partner", ("acme", "globex"))])
    before = {p.name: p.read_text() for p in tmp_path.glob("*.password")}
    assert "partner.password" in before
    secret = (tmp_path / bus_credentials.EVENT_ID_SECRET).read_text()
    (tmp_path / "gateway.password").chmod(0o600)
    bus_credentials.write_credentials(tmp_path)  # no --integrator: its password and scope there keep it
    assert {p.name: p.read_text() for p in tmp_path.glob("*.password")} == before
    assert (tmp_path / bus_credentials.EVENT_ID_SECRET).read_text() == secret
    assert stat.S_IMODE((tmp_path / "gateway.password").stat().st_mode) == 0o644
    hashed, rest = _entries(tmp_path)["partner"]
    assert bcrypt.checkpw(before["partner.password"].strip().encode(), hashed.encode())
    acme, globex = subjects.tenant_token("acme"), subjects.tenant_token("globex")
    assert f'"switchyard.task.submitted.{acme}"' in rest and f'"switchyard.result.{globex}.*"' in rest
    assert '"switchyard.task.submitted"' not in rest and "_INBOX_partner.>" in rest
    # of the JetStream API only its own consumers on each tenant's stored results
    jetstream = sorted(set(re.findall(r'"(\$JS\.[^"]+)"', rest)))
    assert jetstream == sorted(
        f"$JS.{api}"
        for token in (acme, globex)
        for api in (
            f"API.CONSUMER.CREATE.SWITCHYARD.partner-{token}.switchyard.result.{token}.*",
            f"API.CONSUMER.INFO.SWITCHYARD.partner-{token}",
            f"API.CONSUMER.MSG.NEXT.SWITCHYARD.partner-{token}",
            f"ACK.SWITCHYARD.partner-{token}.>",
        )
    )


def test_a_scoped_integrator_publishes_and_hears_only_its_tenants_subjects() -> None:
    granted = integrator_permissions(["acme"], user="partner")
    token = subjects.tenant_token("acme")
    assert granted["publish"] == {
        "allow": [
            f"switchyard.task.submitted.{token}",
            f"switchyard.task.cancelled.{token}",
            f"switchyard.task.feedback.{token}",
            # its own durable consumer on acme's stored results: made on that filter alone
            f"$JS.API.CONSUMER.CREATE.SWITCHYARD.partner-{token}.switchyard.result.{token}.*",
            f"$JS.API.CONSUMER.INFO.SWITCHYARD.partner-{token}",
            f"$JS.API.CONSUMER.MSG.NEXT.SWITCHYARD.partner-{token}",
            f"$JS.ACK.SWITCHYARD.partner-{token}.>",
        ]
    }
    assert granted["subscribe"] == {
        "allow": [f"switchyard.result.{token}.*", f"switchyard.chunk.{token}.*", "_INBOX_partner.>"]
    }
    # every tenant only when asked
    assert integrator_permissions(None)["publish"] == {
        "allow": [
            "switchyard.task.submitted",
            "switchyard.task.cancelled",
            "switchyard.task.feedback",
            "$JS.API.CONSUMER.CREATE.SWITCHYARD.integrator-all.switchyard.result.>",
            "$JS.API.CONSUMER.INFO.SWITCHYARD.integrator-all",
            "$JS.API.CONSUMER.MSG.NEXT.SWITCHYARD.integrator-all",
            "$JS.ACK.SWITCHYARD.integrator-all.>",
        ]
    }


def test_an_integrator_made_before_scoped_users_keeps_what_it_had(tmp_path: Path) -> None:
    """An `integrator.password` with no scope file (a release before scoped users) stays all-tenant."""
    bus_credentials.write_credentials(tmp_path)
    (tmp_path / f"{INTEGRATOR}.password").write_text("an-integrator-made-by-the-previous-release-0123\n")
    bus_credentials.write_credentials(tmp_path)
    assert '"switchyard.task.submitted"' in _entries(tmp_path)[INTEGRATOR][1]
    bus_credentials.write_credentials(tmp_path, integrators=[Integrator(INTEGRATOR, ("acme",))])
    bus_credentials.write_credentials(tmp_path)
    assert '"switchyard.task.submitted"' not in _entries(tmp_path)[INTEGRATOR][1]


def test_run_again_the_users_file_is_the_same_bytes(tmp_path: Path) -> None:
    """No new salts for kept passwords: the file a NATS server (or its Kubernetes secret, or a config
    reloader watching it) holds changes only when a password or a right does."""
    bus_credentials.write_credentials(tmp_path)
    conf = tmp_path / bus_credentials.USERS_CONF
    first = conf.read_bytes()
    bus_credentials.write_credentials(tmp_path)
    assert conf.read_bytes() == first
    (tmp_path / "billing.password").write_text("a-password-rotated-by-hand-0123456789abcdefgh\n")
    bus_credentials.write_credentials(tmp_path)
    entries = _entries(tmp_path)
    assert bcrypt.checkpw(b"a-password-rotated-by-hand-0123456789abcdefgh", entries["billing"][0].encode())
    assert entries["gateway"] == _entries_of(first)["gateway"]


def _entries_of(text: bytes) -> dict[str, tuple[str, str]]:
    found = {}
    for line in text.decode().splitlines():
        match = ENTRY.match(line.strip())
        if match:
            found[match["user"]] = (match["hash"], match["rest"])
    return found


def test_the_command_prints_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--integrator", "partner", "--tenant", "acme"]
    assert main(["bus", "credentials", str(tmp_path / "c"), *args]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[-1] == str(tmp_path / "c" / bus_credentials.USERS_CONF)
    assert str(tmp_path / "c" / "partner.password") in printed
    assert main(["bus", "permissions", *args]) == 0
    out = capsys.readouterr().out
    assert '{user: "partner", password: $PARTNER_NATS_PASSWORD' in out
    assert f"switchyard.task.submitted.{subjects.tenant_token('acme')}" in out
    for wrong in (
        ["--integrator", "partner"],
        ["--tenant", "acme"],
        ["--integrator", "gateway", "--all-tenants"],
    ):
        assert main(["bus", "permissions", *wrong]) == 1
        assert capsys.readouterr().err.startswith("switchyard bus: ")  # one line naming the command
