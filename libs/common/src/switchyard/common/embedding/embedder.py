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
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        threads: int = 1,
        max_tokens: int = MAX_TOKENS,
        head_share: float = 0.5,
    ) -> None:
        """`head_share`: of a longer text's tokens, the share kept from its beginning (the rest from its
        end); 1.0 keeps only the head, as sentence-transformers does."""
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
        self.tokenizer = PromptTokenizer(tokenizer_path, max_tokens=max_tokens, head_share=head_share)
        self.model_path = model_path
        self.dim = int(self._session.get_outputs()[0].shape[1])

    def embed(self, texts: list[str]) -> Embeddings:
        """Embeds a batch, each prompt in a run of its own: a prompt's vector never depends on what it
        was batched with. The int8 encoder quantises each activation tensor with one scale taken from
        the whole tensor (`DynamicQuantizeMatMul`), so in a shared run the other prompts and their
        padding moved a prompt's vector (cosine down to 0.983 against the same prompt alone) and changed
        the type of ~2 % of prompts (9 of 400 held-out prompts, batch of 32): a task's classification
        would hang on which other tasks, of any tenant, arrived in the same few milliseconds, and
        `predict`, `eval` and the service could disagree about one prompt. Runs of one cost ~5-10 %
        more CPU per prompt than shared ones (services/classifier/README.md, "Batch-independent")."""
        if not texts:
            return Embeddings(np.zeros((0, self.dim), dtype=np.float32), [], [])
        batch = self.tokenizer.encode(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, n in enumerate(batch.lengths):
            vectors[i] = self.run(batch.input_ids[i : i + 1, :n], batch.attention_mask[i : i + 1, :n])[0]
        return Embeddings(vectors, batch.truncated, batch.lengths)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """One ONNX Runtime run over rows of token ids ([rows, seq], int64, padded with 0 where the mask
        is 0): their unit vectors, float32 [rows, dim]. The fp32 encoder gives a row the same vector
        within float rounding (max |difference| ~1e-7) whatever the rows beside it and their padding;
        the int8 encoders do not (see `embed`)."""
        out: np.ndarray = self._session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[
            0
        ]
        return out

    def embed_many(
        self, texts: list[str], *, batch_size: int = 32, progress: Callable[[int, int], None] | None = None
    ) -> Embeddings:
        """Embeds any number of texts, `batch_size` at a time (the unit `progress` reports)."""
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        truncated: list[bool] = []
        tokens: list[int] = []
        for start in range(0, len(texts), batch_size):
            out = self.embed(texts[start : start + batch_size])
            vectors[start : start + len(out.tokens)] = out.vectors
            truncated += out.truncated
            tokens += out.tokens
            if progress is not None:
                progress(min(start + batch_size, len(texts)), len(texts))
        return Embeddings(vectors, truncated, tokens)
