from __future__ import annotations

from pydantic import Field

from switchyard.common.config import CommonSettings
from switchyard.gateway.limits.models import Limits


class GatewaySettings(CommonSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    task_timeout_s: float = Field(default=120.0, gt=0, description="how long a request waits for its task")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="larger bodies get 413")
    max_prompt_chars: int = Field(default=400_000, gt=0, description="larger prompts get 413")
    async_task_timeout_s: float = Field(
        default=3600.0, gt=0, description="how long the task API follows a submitted task before `timed_out`"
    )
    auth_cache_ttl_s: float = 30.0
    readiness_timeout_s: float = 1.0
    providers_refresh_s: float = 2.0

    # Rate limits and quotas (defaults: the product plan), shared by every replica through JetStream KV.
    limits_enabled: bool = True
    limit_user_requests_per_min: int = Field(default=100, ge=0)
    limit_user_tokens_per_day: int = Field(default=1_000_000, ge=0)
    limit_org_requests_per_min: int = Field(default=1_000, ge=0)
    limit_org_tokens_per_day: int = Field(default=10_000_000, ge=0)
    limit_org_concurrent_tasks: int = Field(default=20, ge=0)
    limit_global_requests_per_min: int = Field(default=10_000, ge=0)
    # Budgets: daily per user by plan, monthly per organisation (set through the admin API).
    budgets_enabled: bool = True
    budget_free_daily_usd: float = Field(default=0.50, ge=0)
    budget_pro_daily_usd: float = Field(default=10.0, ge=0)
    budget_default_max_tokens: int = Field(
        default=4096, gt=0, description="output tokens reserved for a request that sets no max_tokens"
    )

    def limits(self) -> Limits:
        return Limits(
            user_requests_per_min=self.limit_user_requests_per_min,
            user_tokens_per_day=self.limit_user_tokens_per_day,
            org_requests_per_min=self.limit_org_requests_per_min,
            org_tokens_per_day=self.limit_org_tokens_per_day,
            org_concurrent_tasks=self.limit_org_concurrent_tasks,
            global_requests_per_min=self.limit_global_requests_per_min,
        )

    def plan_daily_usd(self) -> dict[str, float | None]:
        return {"free": self.budget_free_daily_usd, "pro": self.budget_pro_daily_usd, "enterprise": None}
