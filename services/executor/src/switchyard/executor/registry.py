"""Which providers this executor can call, built from settings, and what it announces about them."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

from switchyard.common.providers import ProviderStatus
from switchyard.executor.config import ExecutorSettings
from switchyard.executor.providers.anthropic import AnthropicProvider, AnthropicSettings
from switchyard.executor.providers.base import Closeable, Provider
from switchyard.executor.providers.gemini import GeminiProvider, GeminiSettings
from switchyard.executor.providers.http import host_of
from switchyard.executor.providers.local import (
    LocalEmbeddings,
    LocalModelConfig,
    LocalProvider,
    default_model_path,
    files_loader,
)
from switchyard.executor.providers.openai import OpenAIProvider, OpenAISettings

log = logging.getLogger(__name__)
LOCAL_ENDPOINT = "in-process"


@dataclass
class ProviderSet:
    providers: dict[str, Provider] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)  # host only: never a path, never a key

    def add(self, name: str, provider: Provider, endpoint: str) -> None:
        self.providers[name] = provider
        self.endpoints[name] = endpoint

    def statuses(self, *, announced_by: str) -> list[ProviderStatus]:
        return [
            ProviderStatus(provider=n, endpoint=e, announced_by=announced_by)
            for n, e in self.endpoints.items()
        ]

    async def aclose(self) -> None:
        for provider in self.providers.values():
            if isinstance(provider, Closeable):
                await provider.aclose()


def local_model_path(settings: ExecutorSettings) -> Path | None:
    if settings.local_model_path is not None:
        return settings.local_model_path if settings.local_model_path.is_file() else None
    return default_model_path()


def local_embeddings(settings: ExecutorSettings) -> LocalEmbeddings | None:
    """The local embedding model when it is on and its runtime is installed (the files are found, or
    built, on first use: a missing file fails those calls, not the service's start)."""
    if not settings.local_embeddings:
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        log.warning("onnxruntime is not installed: the local provider serves no embeddings")
        return None
    return LocalEmbeddings(files_loader(settings.models_dir, build=settings.local_embedding_build_models))


def build_providers(
    settings: ExecutorSettings,
    *,
    openai: OpenAISettings,
    anthropic: AnthropicSettings,
    gemini: GeminiSettings | None = None,
) -> ProviderSet:
    """`local` when its model file exists (and its embedding model: `local_embeddings`); `openai`,
    `anthropic` and `gemini` when their API keys are set; and every extra OpenAI-, Anthropic- or
    Gemini-compatible upstream under its own name."""
    found = ProviderSet()
    if settings.local_enabled:
        path = local_model_path(settings)
        if path is None:
            log.warning("local model file not found: the local provider is off")
        else:
            config = LocalModelConfig(
                model_path=path,
                max_tokens=settings.local_max_tokens,
                n_threads=settings.local_threads,
                seed=settings.local_seed,
            )
            found.add("local", LocalProvider(config, embeddings=local_embeddings(settings)), LOCAL_ENDPOINT)
    if openai.configured:
        found.add(
            "openai",
            OpenAIProvider(openai, timeout_s=settings.call_timeout_s),
            host_of(openai.resolved_base_url()),
        )
    if anthropic.configured:
        found.add(
            "anthropic",
            AnthropicProvider(anthropic, timeout_s=settings.call_timeout_s),
            host_of(anthropic.resolved_base_url()),
        )
    if gemini is not None and gemini.configured:
        found.add(
            "gemini",
            GeminiProvider(gemini, timeout_s=settings.call_timeout_s),
            host_of(gemini.resolved_base_url()),
        )
    for name, extra in settings.extra_providers.items():
        if name in found.providers:
            log.warning("extra provider %s ignored: the name is taken", name)
        elif extra.kind == "gemini":
            conf_g = GeminiSettings(api_key=extra.api_key, base_url=extra.base_url)
            found.add(
                name, GeminiProvider(conf_g, timeout_s=settings.call_timeout_s), host_of(extra.base_url)
            )
        elif extra.kind == "openai":
            conf = OpenAISettings(  # none of the OPENAI_* variables: they are the `openai` provider's
                api_key=extra.api_key, base_url=extra.base_url, org_id=None, project_id=None, itself=None
            )
            found.add(name, OpenAIProvider(conf, timeout_s=settings.call_timeout_s), host_of(extra.base_url))
        else:
            conf_a = AnthropicSettings(api_key=extra.api_key, base_url=extra.base_url)
            provider = AnthropicProvider(conf_a, timeout_s=settings.call_timeout_s)
            found.add(name, provider, host_of(extra.base_url))
    return found
