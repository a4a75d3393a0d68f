"""Settings shared by every service. Loaded in each service's `main()`, never at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    log_level: str = "INFO"
    log_json: bool = False
    metrics_port: int | None = Field(default=None, description="port for /metrics (services without HTTP)")
    metrics_host: str = Field(default="127.0.0.1", description="/metrics binds here; 0.0.0.0 in a container")
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas of Switchyard's streams: 3 on a 3-node cluster"
    )
    instance: str = Field(default="", description="replica name, for logs and metrics")
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
