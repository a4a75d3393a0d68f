from switchyard.executor.providers.local.adapter import LocalModelConfig, LocalProvider, default_model_path
from switchyard.executor.providers.local.embeddings import LocalEmbeddings, files_loader

__all__ = ["LocalEmbeddings", "LocalModelConfig", "LocalProvider", "default_model_path", "files_loader"]
