from switchyard.executor.providers.local.adapter import LocalModelConfig, LocalProvider, default_model_path

__all__ = ["LocalModelConfig", "LocalProvider", "default_model_path"]
