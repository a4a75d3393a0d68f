"""A `SWITCHYARD_*` (or provider) variable with a bad value stops every service and `switchyard up` with
exit code 2 and one line naming the variable, its value and what is expected. Before, each printed
pydantic's traceback (some forty lines ending in `ValidationError: 1 validation error for
GatewaySettings`), `switchyard up` too, with exit code 1; a list not written as JSON said only `error
parsing value for field "cors_origins" from source "EnvSettingsSource"`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # real processes, no servers

# Nothing listens there: a process that started anyway would wait on the bus (and time out the test).
DEAD_BUS = "nats://127.0.0.1:1"


def _run(args: list[str], env: dict[str, str], tmp: Path) -> subprocess.Popen[str]:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")},
        "SWITCHYARD_NATS_URL": DEAD_BUS,
        "SWITCHYARD_VAR_DIR": str(tmp),
        **env,
    }
    return subprocess.Popen(args, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


CASES = [
    # (command, environment, what the line must name)
    (
        ["-m", "switchyard.gateway"],
        {"SWITCHYARD_HTTP_PORT": "abc"},
        "SWITCHYARD_HTTP_PORT='abc': expected a valid integer",
    ),
    (
        ["-m", "switchyard.gateway"],
        {"SWITCHYARD_GUARDRAIL_INJECTION": "maybe"},
        "SWITCHYARD_GUARDRAIL_INJECTION='maybe': expected 'off' or 'refuse'",
    ),
    (
        ["-m", "switchyard.gateway"],
        {"SWITCHYARD_CORS_ORIGINS": "https://a.example"},
        "SWITCHYARD_CORS_ORIGINS='https://a.example': expected JSON",
    ),
    (
        ["-m", "switchyard.router"],
        {"SWITCHYARD_STOP_GRACE_S": "-1"},
        "SWITCHYARD_STOP_GRACE_S='-1': expected a value greater than 0",
    ),
    (
        ["-m", "switchyard.executor"],
        {"SWITCHYARD_RETRY_MAX": "two"},
        "SWITCHYARD_RETRY_MAX='two': expected a valid integer",
    ),
    (
        ["-m", "switchyard.audit"],
        {"SWITCHYARD_LOG_JSON": "perhaps"},
        "SWITCHYARD_LOG_JSON='perhaps': expected a valid boolean",
    ),
    # `switchyard up` reads every service's settings before it starts anything
    (["-m", "switchyard.cli.main", "up"], {"SWITCHYARD_HTTP_PORT": "abc"}, "SWITCHYARD_HTTP_PORT='abc'"),
    (
        ["-m", "switchyard.cli.main", "up"],
        {"SWITCHYARD_GUARDRAIL_PII": "sometimes"},
        "SWITCHYARD_GUARDRAIL_PII='sometimes'",
    ),
]


def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    procs = [
        (_run([sys.executable, *args], env, tmp_path / str(i)), args, expected)
        for i, (args, env, expected) in enumerate(CASES)
    ]
    for proc, args, expected in procs:
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{args} started with a bad setting")
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (args, err[-2000:])
        assert len(lines) == 1 and expected in lines[0], (args, err[-2000:])
        assert "Traceback" not in err and "nats-server" not in out, args


def test_a_service_on_postgresql_without_the_event_id_secret_cannot_start(tmp_path: Path) -> None:
    """Every service keys the event ids it derives with the deployment's secret: on PostgreSQL (not the
    embedded run, which makes one in its var dir) a service given none stops at once, in one line naming
    the settings, rather than derive ids no other replica shares."""
    postgres = {"SWITCHYARD_DATABASE_URL": "postgresql+asyncpg://switchyard@127.0.0.1:1/switchyard"}
    names = ("gateway", "classifier", "router", "executor", "billing", "audit")
    procs = [(_run([sys.executable, "-m", f"switchyard.{n}"], postgres, tmp_path / n), n) for n in names]
    for proc, name in procs:
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{name} started without the event id secret")
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, err[-2000:])
        assert (
            len(lines) == 1 and "SWITCHYARD_EVENT_ID_SECRET or SWITCHYARD_EVENT_ID_SECRET_FILE" in lines[0]
        ), (
            name,
            err[-2000:],
        )
