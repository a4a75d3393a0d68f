from switchyard.executor.providers.gemini.adapter import GeminiProvider
from switchyard.executor.providers.gemini.config import GeminiSettings

__all__ = ["GeminiProvider", "GeminiSettings"]
