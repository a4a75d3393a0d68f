"""The routing policy: tiers, models and their prices. Read by the router (decisions), billing (prices)
and the gateway (the model catalogue). Validated on load with errors that name the offending field."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchyard.common.errors import ConfigurationError

DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")
TIER_ORDER = ("local", "fast", "standard", "premium")


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=r"^[a-z0-9_-]+/.+$", description="<provider>/<name>, what clients pass as `model`"
    )
    provider: str
    upstream: str = Field(description="the model name the provider knows")
    tier: str
    input_per_1k: float = Field(ge=0, description="USD per 1K input tokens")
    output_per_1k: float = Field(ge=0, description="USD per 1K output tokens")
    context_window: int = Field(gt=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000.0


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fast_below: float = Field(default=0.3, ge=0, le=1)
    premium_above: float = Field(default=0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.fast_below > self.premium_above:
            raise ValueError("thresholds.fast_below must not exceed thresholds.premium_above")
        return self


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    thresholds: Thresholds = Thresholds()
    expected_output_tokens: int = Field(default=256, gt=0)
    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        seen: set[str] = set()
        for m in self.models:
            if m.tier not in TIER_ORDER:
                raise ValueError(f"model {m.id}: unknown tier {m.tier!r} (tiers: {', '.join(TIER_ORDER)})")
            if not m.id.startswith(f"{m.provider}/"):
                raise ValueError(f"model {m.id}: the id must start with its provider '{m.provider}/'")
            if m.id in seen:
                raise ValueError(f"model {m.id} is listed twice")
            seen.add(m.id)
        return self

    def model(self, model_id: str) -> ModelSpec | None:
        for m in self.models:
            if m.id == model_id:
                return m
        return None

    def in_tier(self, tier: str) -> list[ModelSpec]:
        return [m for m in self.models if m.tier == tier]

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def load_policy(path: Path | None = None) -> Policy:
    source = path or DEFAULT_POLICY
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"routing policy not found: {source}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"routing policy {source} is not valid YAML: {exc}") from exc
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ConfigurationError(f"routing policy {source} is invalid: {problems}") from exc
