from switchyard.executor.providers.openai.adapter import OpenAIProvider
from switchyard.executor.providers.openai.config import OpenAISettings

__all__ = ["OpenAIProvider", "OpenAISettings"]
