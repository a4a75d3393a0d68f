"""Google Gemini (the Gemini API of Google AI Studio) settings, from the variables Google's SDK reads."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"


class GeminiSettings(BaseSettings):
    """GEMINI_API_KEY (or GOOGLE_API_KEY), GEMINI_BASE_URL, GEMINI_API_VERSION.

    An empty GEMINI_BASE_URL counts as unset; an empty key leaves the provider off.
    """

    model_config = SettingsConfigDict(env_prefix="GEMINI_", extra="ignore", populate_by_name=True)

    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY")
    )
    base_url: str | None = None
    api_version: str = API_VERSION

    @property
    def configured(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())

    def resolved_base_url(self) -> str:
        return self.base_url or DEFAULT_BASE_URL
