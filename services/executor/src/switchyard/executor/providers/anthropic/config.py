"""Anthropic settings, read from the variables the Anthropic SDK reads."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicSettings(BaseSettings):
    """ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL (an empty value counts as unset)."""

    model_config = SettingsConfigDict(env_prefix="ANTHROPIC_", extra="ignore")

    api_key: SecretStr | None = None
    base_url: str | None = None
    default_max_tokens: int = 4096  # the Messages API requires max_tokens; OpenAI-style requests may omit it

    @property
    def configured(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())

    def resolved_base_url(self) -> str:
        return self.base_url or DEFAULT_BASE_URL
