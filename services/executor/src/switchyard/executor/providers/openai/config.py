"""OpenAI (and compatible servers') settings, read from the same variables the OpenAI SDK reads."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAISettings(BaseSettings):
    """OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID, and OPENAI_ITSELF.

    An empty OPENAI_BASE_URL counts as unset (the SDK would use the empty string and fail on every call);
    an empty OPENAI_API_KEY leaves the provider off. The base URL tells OpenAI from a server copying its
    protocol (OpenAI's model rules and its Responses API apply to OpenAI only); OPENAI_ITSELF=true says a
    base URL elsewhere is OpenAI's API behind a proxy (an egress proxy, an AI gateway), false the opposite.
    """

    model_config = SettingsConfigDict(env_prefix="OPENAI_", extra="ignore")

    api_key: SecretStr | None = None
    base_url: str | None = None
    org_id: str | None = None
    project_id: str | None = None
    itself: bool | None = None  # None: OpenAI when the base URL is OpenAI's

    @property
    def configured(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())

    def resolved_base_url(self) -> str:
        return self.base_url or DEFAULT_BASE_URL

    def is_openai_itself(self) -> bool:
        if self.itself is not None:
            return self.itself
        return self.resolved_base_url().rstrip("/") == DEFAULT_BASE_URL
