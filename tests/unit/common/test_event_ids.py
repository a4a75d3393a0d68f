"""Derived event ids: scoped to the tenant, keyed with the deployment's secret (`ids.EventIdKey`), and
where that secret comes from (`event_id_key.load`): a service that has none where one is required
cannot start, in one line naming the settings; the secret is in no repr."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from switchyard.cli.devstack import Stack, StackSettings
from switchyard.common import event_id_key, ids
from switchyard.common.config import CommonSettings
from switchyard.common.errors import ConfigurationError

pytestmark = pytest.mark.unit

SECRET = "a-deployments-secret-of-32-chars!"
POSTGRES = "postgresql+asyncpg://switchyard@db.example/switchyard"


def test_an_event_id_is_the_tenants_own_and_needs_the_secret() -> None:
    key = ids.EventIdKey(SECRET.encode())
    acme = key.event_id("job-1", "classified", tenant_id="acme")
    assert acme == key.event_id("job-1", "classified", tenant_id="acme")  # a redelivery: the same id
    assert len(acme) == 32 and int(acme, 16) >= 0
    assert acme != key.event_id("job-1", "classified", tenant_id="globex")
    assert acme != key.event_id("job-1", "routed", tenant_id="acme")
    assert acme != ids.EventIdKey(b"another-secret-of-32-characters!").event_id(
        "job-1", "classified", tenant_id="acme"
    )
    # what a bus client can work out without the secret
    assert acme not in {ids.derived_id("job-1", "classified"), ids.derived_id("acme\njob-1", "classified")}
    # no concatenation makes two parts one: ("a\nb", "c") is not ("a", "b\nc")
    assert key.event_id("b\nc", "s", tenant_id="a") != key.event_id("c", "s", tenant_id="a\nb")
    assert SECRET not in repr(key)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ids.EventIdKey(b"short")


def test_the_secret_comes_from_its_setting_or_its_file(tmp_path: Path) -> None:
    key, source = event_id_key.load(CommonSettings(event_id_secret=SECRET, database_url=POSTGRES))
    assert source == "SWITCHYARD_EVENT_ID_SECRET"
    assert key.event_id("e", "s", tenant_id="t") == ids.EventIdKey(SECRET.encode()).event_id(
        "e", "s", tenant_id="t"
    )
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    from_file, source = event_id_key.load(CommonSettings(event_id_secret_file=path, database_url=POSTGRES))
    assert source == "SWITCHYARD_EVENT_ID_SECRET_FILE"
    assert from_file.event_id("e", "s", tenant_id="t") == key.event_id("e", "s", tenant_id="t")


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({}, "derived event ids need a secret: set SWITCHYARD_EVENT_ID_SECRET or"),
        ({"event_id_secret": "short"}, "SWITCHYARD_EVENT_ID_SECRET: the event id secret is too short"),
        ({"event_id_secret_file": Path("/nonexistent/secret")}, "cannot be read"),
        ({"event_id_secret": SECRET, "event_id_secret_file": Path("/x")}, "both set"),
    ],
)
def test_a_service_on_postgresql_without_a_usable_secret_cannot_start(
    settings: dict[str, object], said: str
) -> None:
    with pytest.raises(ConfigurationError, match=said.replace("(", r"\(")) as caught:
        event_id_key.load(CommonSettings(database_url=POSTGRES, **settings))  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


def test_the_embedded_run_makes_its_secret_once_in_its_var_dir(tmp_path: Path) -> None:
    settings = CommonSettings(var_dir=tmp_path)
    key, source = event_id_key.load(settings)
    path = tmp_path / event_id_key.KEY_FILE
    assert source == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, _ = event_id_key.load(settings)  # kept: every service of the run, every run, the same ids
    assert again.event_id("e", "s", tenant_id="t") == key.event_id("e", "s", tenant_id="t")


def test_switchyard_up_names_its_secret_to_every_bus_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWITCHYARD_EVENT_ID_SECRET", raising=False)
    monkeypatch.delenv("SWITCHYARD_EVENT_ID_SECRET_FILE", raising=False)
    stack = Stack(StackSettings(var_dir=tmp_path))
    path = tmp_path / event_id_key.KEY_FILE
    for name in ("gateway", "classifier", "router", "executor", "billing", "audit"):
        env = stack.service_env(0, name)
        assert env["SWITCHYARD_EVENT_ID_SECRET_FILE"] == str(path), name
        assert "SWITCHYARD_EVENT_ID_SECRET" not in env  # the secret is in no process's environment
    secret = path.read_text().strip()
    assert len(secret) >= 43 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stack.service_env(0, "classifier")["SWITCHYARD_EVENT_ID_SECRET_FILE"] == str(path)
    assert path.read_text().strip() == secret  # kept across runs
    exporter = stack.service_env(0, "siem-exporter")  # no bus, no events
    assert not {"SWITCHYARD_EVENT_ID_SECRET", "SWITCHYARD_EVENT_ID_SECRET_FILE"} & exporter.keys()


def test_switchyard_up_passes_on_a_secret_set_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_EVENT_ID_SECRET_FILE", "/run/secrets/event-id-secret")
    env = Stack(StackSettings(var_dir=tmp_path)).service_env(0, "router")
    assert env["SWITCHYARD_EVENT_ID_SECRET_FILE"] == "/run/secrets/event-id-secret"
    assert not (tmp_path / event_id_key.KEY_FILE).exists()
