"""The trained heads at inference time: small numpy MLPs over [embedding, lexical features]."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from switchyard.classifier import features

# Artifacts written before heads.json recorded the token cap were all trained on prompts read at 128 tokens.
LEGACY_PROMPT_TOKENS = 128


@dataclass(frozen=True, slots=True)
class Mlp:
    """Dense layers with ReLU between them; the last layer's output is returned raw (logits)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < last:
                h = np.maximum(h, 0.0)
        return h

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{prefix}.w{i}"] = w
            out[f"{prefix}.b{i}"] = b
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> Mlp:
        ws, bs = [], []
        i = 0
        while f"{prefix}.w{i}" in arrays:
            ws.append(np.asarray(arrays[f"{prefix}.w{i}"], dtype=np.float32))
            bs.append(np.asarray(arrays[f"{prefix}.b{i}"], dtype=np.float32))
            i += 1
        if not ws:
            raise ValueError(f"no layers for head {prefix!r}")
        for a, b in itertools.pairwise(ws):
            if a.shape[1] != b.shape[0]:
                raise ValueError(f"head {prefix!r}: layer shapes {a.shape} and {b.shape} do not chain")
        return cls(tuple(ws), tuple(bs))

    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def output_dim(self) -> int:
        return int(self.weights[-1].shape[1])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))  # type: ignore[no-any-return]


_NON_ASCII = features.NAMES.index("non_ascii_frac")


@dataclass(frozen=True, slots=True)
class ScriptHead:
    """The type head for prompts written mostly outside ASCII (Chinese, Russian, Arabic, ...), trained
    with the multilingual requests besides everything the main head trains on. all-MiniLM-L6-v2 is an
    English model: the main head reads such prompts near chance, and training it on them costs English."""

    mean: np.ndarray
    std: np.ndarray
    type_head: Mlp
    temperature: float
    min_non_ascii: float  # a prompt whose share of non-ASCII characters is above this is read by this head
    # heads-8: so is a prompt in another Latin-script language than English (`languages.other_language`)
    other_languages: bool = False

    def takes(self, lexical: np.ndarray, other_language: np.ndarray | None = None) -> np.ndarray:
        """[n] bool: the rows this head reads, from their lexical features and, when it reads other
        Latin-script languages, whether each prompt is in one ([n] bool)."""
        rows = lexical[:, _NON_ASCII] > self.min_non_ascii
        if self.other_languages and other_language is not None:
            rows |= other_language
        return rows

    def probs(self, raw: np.ndarray) -> np.ndarray:
        return softmax(self.type_head((raw - self.mean) / self.std) / self.temperature)


@dataclass(frozen=True)
class Heads:
    version: str
    labels: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    type_head: Mlp
    complexity_head: Mlp
    temperature: float = 1.0
    manifest: dict[str, Any] = field(default_factory=dict)
    other_scripts: ScriptHead | None = None

    @property
    def prompt_tokens(self) -> int:
        """Tokens per prompt the heads were trained on: the cap the service reads prompts at by default."""
        return int(self.manifest.get("prompt_tokens", LEGACY_PROMPT_TOKENS))

    @property
    def input_version(self) -> str:
        """What a stored input vector must have been made with, besides the encoder file: the lexical
        features and the token cap (vectors stored before the cap was recorded were all read at 128)."""
        lexical = str(self.manifest.get("lexical_features", ""))
        cap = self.prompt_tokens
        return lexical if cap == LEGACY_PROMPT_TOKENS else f"{lexical}+t{cap}"

    @property
    def reads_languages(self) -> bool:
        """Whether `type_probs` wants to know which prompts are in another Latin-script language."""
        return self.other_scripts is not None and self.other_scripts.other_languages

    def type_probs(
        self, raw: np.ndarray, x: np.ndarray | None = None, other_language: np.ndarray | None = None
    ) -> np.ndarray:
        """Type probabilities of unnormalised inputs [embedding, lexical features] (`x`: the same,
        normalised, if the caller has them): the main head's, and the other-scripts head's for the
        prompts it takes (`other_language`: [n] bool, a prompt in another Latin-script language)."""
        x = (raw - self.mean) / self.std if x is None else x
        probs = softmax(self.type_head(x) / self.temperature)
        other = self.other_scripts
        if other is not None:
            rows = other.takes(raw[:, -features.DIM :], other_language)
            if rows.any():
                probs[rows] = other.probs(raw[rows])
        return probs

    def predict(
        self, vectors: np.ndarray, lexical: np.ndarray, other_language: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(type probabilities [n, labels], complexity [n] in [0, 1])."""
        raw = np.concatenate([vectors, lexical], axis=1).astype(np.float32)
        x = (raw - self.mean) / self.std
        return self.type_probs(raw, x, other_language), sigmoid(self.complexity_head(x)[:, 0])
