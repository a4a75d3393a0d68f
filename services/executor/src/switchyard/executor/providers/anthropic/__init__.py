from switchyard.executor.providers.anthropic.adapter import AnthropicProvider
from switchyard.executor.providers.anthropic.config import AnthropicSettings

__all__ = ["AnthropicProvider", "AnthropicSettings"]
