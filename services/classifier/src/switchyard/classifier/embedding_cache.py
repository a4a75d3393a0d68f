"""Embeddings of the training pool, computed once and kept on disk, keyed by the data and the model."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

from switchyard.common.embedding.embedder import Embedder

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path("~/.cache/switchyard/classifier").expanduser()


def texts_sha256(texts: list[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "replace")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cache_key(texts: list[str], model_sha256: str, max_tokens: int) -> str:
    """Keyed by the exact texts and the exact model file, so a stale cache can never be picked up."""
    material = f"{texts_sha256(texts)}:{model_sha256}:{max_tokens}:headtail-v1:alone"
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def cached_embeddings(
    texts: list[str],
    *,
    embedder: Embedder,
    model_sha256: str,
    cache_dir: Path | None = None,
    verbose: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors [n, 384], truncated [n] bool) for `texts`, from the cache when it holds them."""
    folder = cache_dir or default_cache_dir()
    key = cache_key(texts, model_sha256, embedder.tokenizer.max_tokens)
    path = folder / f"embeddings-{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            if data["vectors"].shape[0] == len(texts):
                return data["vectors"], data["truncated"]
        log.warning("ignoring stale embedding cache %s", path)

    def progress(done: int, total: int) -> None:
        if verbose and (done % 2048 < 32 or done == total):
            print(f"  embedded {done}/{total}", file=sys.stderr, flush=True)

    out = embedder.embed_many(texts, batch_size=32, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # another process may be writing it too
    np.savez(tmp, vectors=out.vectors, truncated=np.array(out.truncated, dtype=bool))
    os.replace(tmp, path)
    return out.vectors, np.array(out.truncated, dtype=bool)
