"""The embedded run's NATS users: a password each, made once and kept, readable by their owner only, and
handed to each service as a file's path, never as the password itself."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from switchyard.cli import nats_users
from switchyard.cli.devstack import START_ORDER, Stack, StackSettings
from switchyard.cli.processes import authorization
from switchyard.common.config import CommonSettings
from switchyard.common.errors import ConfigurationError
from switchyard.common.logs import redact

pytestmark = pytest.mark.unit


def test_each_user_gets_a_private_random_password_kept_across_runs(tmp_path: Path) -> None:
    first = nats_users.ensure_passwords(tmp_path)
    assert set(first) == {*START_ORDER, "operator"}
    assert len(set(first.values())) == len(first)  # one each, not one shared
    assert all(len(password) >= 40 for password in first.values())
    assert stat.S_IMODE((tmp_path / "nats-auth").stat().st_mode) == 0o700
    for user in first:
        assert stat.S_IMODE(nats_users.password_path(tmp_path, user).stat().st_mode) == 0o600
    nats_users.password_path(tmp_path, "router").chmod(0o644)  # copied in with a looser mode
    assert nats_users.ensure_passwords(tmp_path) == first  # the next run keeps them
    assert stat.S_IMODE(nats_users.password_path(tmp_path, "router").stat().st_mode) == 0o600


def test_services_get_their_own_user_and_a_password_file_not_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SWITCHYARD_NATS_URL", raising=False)
    monkeypatch.setenv("SWITCHYARD_NATS_PASSWORD", "from-the-shell")
    passwords = nats_users.ensure_passwords(tmp_path)
    stack = Stack(StackSettings(var_dir=tmp_path))
    for index, name in enumerate(START_ORDER):
        env = stack.service_env(index, name)
        assert env["SWITCHYARD_NATS_USER"] == name
        assert env["SWITCHYARD_NATS_PASSWORD_FILE"] == str(tmp_path / "nats-auth" / f"{name}.password")
        assert "SWITCHYARD_NATS_PASSWORD" not in env
        assert not any(password in value for value in env.values() for password in passwords.values())
    outcomes = stack.service_env(0, "classifier-outcomes")
    assert outcomes["SWITCHYARD_NATS_USER"] == "classifier"


def test_a_bus_of_ones_own_keeps_the_credentials_set_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWITCHYARD_NATS_URL", "nats://nats.example:4222")
    monkeypatch.setenv("SWITCHYARD_NATS_USER", "switchyard")
    env = Stack(StackSettings(var_dir=tmp_path)).service_env(0, "audit")
    assert env["SWITCHYARD_NATS_USER"] == "switchyard"
    assert "SWITCHYARD_NATS_PASSWORD_FILE" not in env


def test_the_server_configuration_lets_in_those_users_only() -> None:
    block = authorization({"gateway": "pw-1", "operator": "pw-2"})
    assert '{user: "gateway", password: "pw-1"}' in block
    assert '{user: "operator", password: "pw-2"}' in block
    assert authorization({}) == ""
    with pytest.raises(ValueError, match="without quotes"):
        authorization({"gateway": 'a"b'})


def test_credentials_half_set_stop_the_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("USER", "PASSWORD", "PASSWORD_FILE"):
        monkeypatch.delenv(f"SWITCHYARD_NATS_{name}", raising=False)
    assert CommonSettings().nats_credentials() is None
    monkeypatch.setenv("SWITCHYARD_NATS_USER", "router")
    with pytest.raises(ConfigurationError, match="has no password"):
        CommonSettings().nats_credentials()
    monkeypatch.setenv("SWITCHYARD_NATS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="cannot read it"):
        CommonSettings().nats_credentials()
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv("SWITCHYARD_NATS_PASSWORD_FILE", str(tmp_path / "pw"))
    found = CommonSettings().nats_credentials()
    assert found is not None
    assert found.connect_options() == {
        "user": "router",
        "password": "s3cret",
        "inbox_prefix": "_INBOX_router",
    }
    assert "s3cret" not in repr(found)
    monkeypatch.setenv("SWITCHYARD_NATS_PASSWORD", "other")
    with pytest.raises(ConfigurationError, match="both set"):
        CommonSettings().nats_credentials()


def test_a_url_with_the_operators_password_is_redacted_wherever_it_is_written(tmp_path: Path) -> None:
    passwords = nats_users.ensure_passwords(tmp_path)
    url = nats_users.url_with_credentials("nats://127.0.0.1:4222", tmp_path)
    assert url == f"nats://operator:{passwords['operator']}@127.0.0.1:4222"
    assert redact(f"cannot reach NATS at {url}: refused") == (
        "cannot reach NATS at nats://operator:[REDACTED]@127.0.0.1:4222: refused"
    )
    assert (
        nats_users.url_with_credentials("nats://127.0.0.1:4222", tmp_path / "none") == "nats://127.0.0.1:4222"
    )
