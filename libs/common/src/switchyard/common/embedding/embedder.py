"""Sentence embeddings from the ONNX encoder: one reused ONNX Runtime session, a batch API."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from switchyard.common.embedding.tokens import PromptTokenizer
from switchyard.common.embedding.weights import MAX_TOKENS

# ORT fuses Add + Add + LayerNormalization into SkipLayerNormalization, whose CPU kernel (1.31) is ~3x
# slower than the three it replaces here: 8-10 % of the int8 encoder's time. Same results either way.
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: np.ndarray  # float32 [n, 384], unit length
    truncated: list[bool]
    tokens: list[int]


class Embedder:
    def __init__(
        self, model_path: Path, tokenizer_path: Path, *, threads: int = 1, max_tokens: int = MAX_TOKENS
    ) -> None:
        import onnxruntime as ort

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(model_path),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=DISABLED_OPTIMIZERS,
        )
        self.tokenizer = PromptTokenizer(tokenizer_path, max_tokens=max_tokens)
        self.model_path = model_path
        self.dim = int(self._session.get_outputs()[0].shape[1])

    def embed(self, texts: list[str]) -> Embeddings:
        """Embeds one batch. Prompts of very different lengths run in separate sub-batches, so one long
        prompt does not make every short one in the batch pay for its padding."""
        if not texts:
            return Embeddings(np.zeros((0, self.dim), dtype=np.float32), [], [])
        batch = self.tokenizer.encode(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for group in _length_groups(batch.lengths):
            width = max(batch.lengths[i] for i in group)
            (out,) = self._session.run(
                None,
                {
                    "input_ids": batch.input_ids[group, :width],
                    "attention_mask": batch.attention_mask[group, :width],
                },
            )
            vectors[group] = out
        return Embeddings(vectors, batch.truncated, batch.lengths)

    def embed_many(
        self, texts: list[str], *, batch_size: int = 32, progress: Callable[[int, int], None] | None = None
    ) -> Embeddings:
        """Embeds any number of texts, batching prompts of similar length together to waste less padding."""
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        truncated = [False] * len(texts)
        tokens = [0] * len(texts)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out = self.embed([texts[i] for i in idx])
            vectors[idx] = out.vectors
            for j, i in enumerate(idx):
                truncated[i] = out.truncated[j]
                tokens[i] = out.tokens[j]
            if progress is not None:
                progress(min(start + batch_size, len(texts)), len(texts))
        return Embeddings(vectors, truncated, tokens)


def _length_groups(lengths: list[int], *, max_ratio: float = 1.5) -> list[list[int]]:
    """Indices grouped by similar length: within a group the longest is at most `max_ratio` x the shortest."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= max_ratio * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
