"""Where the secret sealing the Idempotency-Key body digests comes from (taskapi/body_key.py): the
setting; else the gateway's NATS password (every replica has it); else a file under var/, made once and
read by every replica of the machine; a secret too short, or a file that cannot be made, stops the start
naming the setting (never showing the secret)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from switchyard.common.config import settings_problem
from switchyard.common.errors import ConfigurationError
from switchyard.gateway.config import GatewaySettings
from switchyard.gateway.taskapi import body_key
from switchyard.gateway.taskapi.idempotency import BodyKey

SECRET = "s" * 40


def _settings(tmp_path: Path, **more: object) -> GatewaySettings:
    return GatewaySettings(var_dir=tmp_path, **more)  # type: ignore[arg-type]


def test_the_setting_comes_first(tmp_path: Path) -> None:
    key, source = body_key.load(
        _settings(tmp_path, idempotency_secret=SECRET, nats_user="gateway", nats_password="p" * 32)
    )
    assert key == BodyKey(SECRET.encode()) and source == "SWITCHYARD_IDEMPOTENCY_SECRET"
    assert not (tmp_path / body_key.KEY_FILE).exists()


def test_else_the_gateways_nats_password_which_every_replica_has(tmp_path: Path) -> None:
    one, source = body_key.load(_settings(tmp_path, nats_user="gateway", nats_password="p" * 32))
    two, _ = body_key.load(_settings(tmp_path / "other", nats_user="gateway", nats_password="p" * 32))
    other, _ = body_key.load(_settings(tmp_path, nats_user="gateway", nats_password="q" * 32))
    assert one == two and one != other and "NATS password" in source
    assert b"p" * 32 not in one.secret  # derived, not the password itself
    assert not (tmp_path / body_key.KEY_FILE).exists()


def test_else_a_file_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    first, source = body_key.load(_settings(tmp_path))
    path = tmp_path / body_key.KEY_FILE
    assert source == str(path) and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, _ = body_key.load(_settings(tmp_path))
    assert again == first and len(first.secret) >= 32
    assert [p.name for p in tmp_path.iterdir()] == [body_key.KEY_FILE]  # no draft left behind


def test_a_file_that_cannot_be_made_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    with pytest.raises(ConfigurationError) as refused:
        body_key.load(_settings(blocked))
    assert "SWITCHYARD_IDEMPOTENCY_SECRET" in str(refused.value)


def test_a_short_secret_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_IDEMPOTENCY_SECRET", "short-secret")
    with pytest.raises(Exception) as refused:
        GatewaySettings()
    said = settings_problem(refused.value)
    assert said is not None and "SWITCHYARD_IDEMPOTENCY_SECRET=(hidden)" in said, said
    assert "short-secret" not in said
