from __future__ import annotations

from pydantic import Field

from switchyard.common.config import CommonSettings


class GatewaySettings(CommonSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    task_timeout_s: float = Field(default=120.0, gt=0, description="how long a request waits for its task")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="larger bodies get 413")
    max_prompt_chars: int = Field(default=400_000, gt=0, description="larger prompts get 413")
    auth_cache_ttl_s: float = 30.0
    readiness_timeout_s: float = 1.0
    providers_refresh_s: float = 2.0
