"""Settings shared by every service. Loaded in each service's `main()`, never at import."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from switchyard.common.bus_auth import NatsCredentials, credentials
from switchyard.common.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)

STOP_GRACE_S = 10.0  # after SIGTERM, running work may finish this long (`CommonSettings.stop_grace_s`)


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_", extra="ignore")

    var_dir: Path = Field(default=Path("var"), description="where the embedded run keeps its data")
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str = Field(default="", description="the NATS user this process connects as")
    nats_password: SecretStr | None = Field(default=None, description="its password")
    nats_password_file: Path | None = Field(
        default=None, description="a file holding its password (what `switchyard up` gives each service)"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite at <var_dir>/switchyard.db"
    )
    database_pool_size: int = Field(
        default=10, ge=1, description="PostgreSQL: connections each engine of a process keeps open"
    )
    database_max_overflow: int = Field(
        default=10, ge=0, description="PostgreSQL: connections an engine may open past its pool under load"
    )
    database_pgbouncer: bool = Field(
        default=False,
        description="PostgreSQL behind PgBouncer (or another pooler) in transaction mode: statements are "
        "prepared under unique names and never cached on a connection",
    )
    policy_path: Path | None = Field(
        default=None, description="routing policy YAML; default: the bundled one"
    )
    policy_check_s: float = Field(default=1.0, gt=0, description="how often the policy file is checked")
    policy_settle_s: float = Field(
        default=0.25,
        ge=0,
        description="a policy file changed less than this long ago is loaded at a later check (it may be "
        "half-written)",
    )
    log_level: str = "INFO"
    log_json: bool = False
    metrics_port: int | None = Field(default=None, description="port for /metrics (services without HTTP)")
    metrics_host: str = Field(default="127.0.0.1", description="/metrics binds here; 0.0.0.0 in a container")
    bus_provisioned: bool = Field(
        default=False,
        description="the operator made every stream and bucket beforehand: this process only opens them, and "
        "reports one missing or configured otherwise (provisioning.py); false: it creates and updates them",
    )
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas of Switchyard's streams: 3 on a 3-node cluster"
    )
    instance: str = Field(
        default="",
        description="replica name (ping replies, health checks, provider announcements, traces); default "
        "`<service>-<host name>-<pid>` (`replica_name`)",
    )
    loop_watchdog_s: float = Field(
        default=0.0,
        ge=0,
        description="a process whose event loop has not run this long exits (code 70), for orchestrators "
        "that restart only exited containers (docker compose); 0: off (Kubernetes' liveness probe restarts)",
    )
    tenant_check: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="refuse tasks of tenants the tenant registry does not list: auto (once the registry is "
        "kept: a gateway started, or `switchyard tenants add`), on (always), off (never)",
    )
    stop_grace_s: float = Field(
        default=STOP_GRACE_S,
        gt=0,
        le=3600,
        description="after SIGTERM, how long running work (bus handlers; the gateway's requests) may finish "
        "before it is cut; keep it below the orchestrator's kill timeout",
    )

    event_id_secret: SecretStr | None = Field(
        default=None,
        description="the secret every service keys the event ids it derives with (event_id_key.py); the "
        "same for every service and replica of a deployment, and for no bus client; default: the embedded "
        "run's <var_dir>/event-id.key (SQLite only: elsewhere a service without one refuses to start)",
    )
    event_id_secret_file: Path | None = Field(
        default=None, description="a file holding that secret (what `switchyard up` gives each service)"
    )

    legacy_subjects: bool = Field(
        default=True,
        description="also publish results and chunks on the subjects of the release before tenant tokens "
        "(`switchyard.result.<task_id>`, `switchyard.chunk.<task_id>`), and hear them there, so a rolling "
        "upgrade from it fails no request (legacy_subjects.py); turn off once every replica runs this "
        "release. Dropped in the next release",
    )

    def nats_credentials(self) -> NatsCredentials | None:
        """SWITCHYARD_NATS_USER with its password (None: none set; ConfigurationError: half set, or its file
        unreadable)."""
        return credentials(
            user=self.nats_user, password=self.nats_password, password_file=self.nats_password_file
        )

    def resolved_var_dir(self) -> Path:
        return self.var_dir.expanduser().resolve()

    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.resolved_var_dir() / 'switchyard.db'}"

    def db_options(self) -> dict[str, Any]:
        """`db.create_engine`'s keywords for this process (SQLite ignores them)."""
        return {
            "pool_size": self.database_pool_size,
            "max_overflow": self.database_max_overflow,
            "pgbouncer": self.database_pgbouncer,
        }


def replica_name(service: str, instance: str = "") -> str:
    """`instance` (SWITCHYARD_INSTANCE: Kubernetes sets the pod's name), else `<service>-<host name>-<pid>`:
    distinct for every replica of a docker compose service (each container's host name is its own id,
    while every one of them is pid 1) and every process on one machine. It was `<service>-<pid>`:
    `executor-1` in every container."""
    return instance or f"{service}-{socket.gethostname()}-{os.getpid()}"


def load_yaml_model(source: Path, model: type[M], what: str, *, empty: object = None) -> M:
    """The YAML file `source` as `model` (an empty file as `empty`). A file missing, not YAML or not valid
    is a ConfigurationError naming `what`, the file and its first five wrong fields: the service cannot
    start, in one line (`service.run_service`)."""
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{what} not found: {source}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{what} {source} is not valid YAML: {exc}") from exc
    try:
        return model.model_validate(empty if raw is None else raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ConfigurationError(f"{what} {source} is invalid: {problems}") from exc


def settings_problem(exc: Exception) -> str | None:
    """A settings class's error (a `SWITCHYARD_*` or provider variable with a bad value) as one line naming
    each variable, its value and what is expected; None when `exc` is not a settings class's (it is then
    not a problem of the environment). Services and `switchyard` exit 2 with it (service.py, the CLI's
    main), never a pydantic traceback."""
    if isinstance(exc, SettingsError):
        return _unparsed(str(exc))
    if not isinstance(exc, ValidationError):
        return None
    found = _settings_class(exc.title)
    if found is None:
        return None
    prefix = str(found.model_config.get("env_prefix") or "")
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        info = found.model_fields.get(field)
        alias = info.validation_alias if info is not None else None
        name = alias if isinstance(alias, str) else f"{prefix}{field}".upper()
        where = "".join(f"[{p}]" for p in error["loc"][1:])
        expected = _expected(str(error["msg"]))
        if not field:  # a check across several settings
            problems.append(f"{found.__name__}: {expected}")
            continue
        secret = info is not None and "Secret" in str(info.annotation)
        value = "(hidden)" if secret else _shown(error.get("input"))
        problems.append(f"{name}{where}={value}: {expected}")
    return "invalid setting: " + "; ".join(problems)


def _unparsed(message: str) -> str | None:
    """pydantic-settings' SettingsError for a list or mapping whose variable is not JSON: it names the
    field only."""
    match = re.search(r'field "([^"]+)"', message)
    if match is None:
        return None
    field = match.group(1)
    for cls in _settings_classes():
        if field in cls.model_fields:
            name = f"{cls.model_config.get('env_prefix') or ''}{field}".upper()
            value = _shown(os.environ.get(name, ""))
            return f"invalid setting: {name}={value}: expected JSON (a list or object)"
    return f"invalid setting: {field}: expected JSON (a list or object)"


def _settings_classes() -> list[type[BaseSettings]]:
    found: list[type[BaseSettings]] = []
    seen: list[type[BaseSettings]] = [BaseSettings]
    while seen:
        cls = seen.pop()
        if cls is not BaseSettings:
            found.append(cls)
        seen.extend(cls.__subclasses__())
    return found


def _settings_class(title: str) -> type[BaseSettings] | None:
    return next((cls for cls in _settings_classes() if cls.__name__ == title), None)


def _expected(message: str) -> str:
    """pydantic's message as what the variable should be: "Input should be a valid integer" -> "expected
    a valid integer"."""
    for lead in ("Input should be ", "Value error, ", "Assertion failed, "):
        if message.startswith(lead):
            message = message.removeprefix(lead)
            if lead != "Input should be ":
                return message
            if message.startswith(("greater", "less")):  # "Input should be greater than 0"
                return f"expected a value {message}"
            return f"expected {message}"
    return message


def _shown(value: object) -> str:
    from switchyard.common.logs import redact  # a URL's password, a key pasted in the wrong variable

    text = redact(value if isinstance(value, str) else repr(value))
    return repr(text if len(text) <= 80 else text[:77] + "...")
