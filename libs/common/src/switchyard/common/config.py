"""Settings shared by every service. Loaded in each service's `main()`, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchyard.common.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)

STOP_GRACE_S = 10.0  # after SIGTERM, running work may finish this long (`CommonSettings.stop_grace_s`)


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_", extra="ignore")

    var_dir: Path = Field(default=Path("var"), description="where the embedded run keeps its data")
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite at <var_dir>/switchyard.db"
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
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas of Switchyard's streams: 3 on a 3-node cluster"
    )
    instance: str = Field(default="", description="replica name, for logs and metrics")
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

    def resolved_var_dir(self) -> Path:
        return self.var_dir.expanduser().resolve()

    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.resolved_var_dir() / 'switchyard.db'}"


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
