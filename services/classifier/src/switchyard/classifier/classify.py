"""Classification of prompts: embeddings + lexical features -> heads -> type, confidence, complexity.

Plain domain code (no bus imports): the service's handler and the CLI both call it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from switchyard.classifier import artifact, features, languages
from switchyard.classifier.heads import Heads
from switchyard.classifier.urgency import urgency
from switchyard.common.embedding import model_files
from switchyard.common.embedding.embedder import Embedder
from switchyard.common.embedding.tokens import PromptTokenizer
from switchyard.common.events.tasks import EMBEDDING, Classification, TaskSubmitted

log = logging.getLogger(__name__)
# The model version of a classification made without the encoder (an embedding task's).
PASSTHROUGH = "passthrough"


@dataclass(frozen=True, slots=True)
class Prediction:
    type: str
    confidence: float
    complexity: float
    truncated: bool
    scores: dict[str, float]
    model_version: str = ""  # the heads (and encoder, cap) that made it: what the event must name


@dataclass(frozen=True, slots=True)
class Live:
    """What classifies a batch: the heads, the encoder reading prompts at their cap, and the version that
    names both. Replaced whole (one reference) when promoted heads are swapped in, so a batch is made by
    one of them from start to end and its predictions carry that one's version."""

    embedder: Embedder
    heads: Heads
    model_version: str


class Classifier:
    def __init__(
        self,
        embedder: Embedder,
        heads: Heads,
        *,
        model_version: str,
        encoder: str = "",
        encoder_sha256: str | None = None,
        tokenizer_path: Path | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.live = Live(embedder, heads, model_version)
        self.encoder = encoder  # `minilm-<precision>-<build>`, the version's encoder part
        self.encoder_sha256 = encoder_sha256
        self._tokenizer_path = tokenizer_path
        self._max_tokens = max_tokens  # an operator's cap (SWITCHYARD_CLASSIFIER_MAX_TOKENS), else None

    @property
    def heads(self) -> Heads:
        return self.live.heads

    @property
    def embedder(self) -> Embedder:
        return self.live.embedder

    @property
    def model_version(self) -> str:
        return self.live.model_version

    @classmethod
    def load(
        cls,
        *,
        models_dir: Path | None = None,
        artifact_dir: Path | None = None,
        precision: str = model_files.DEFAULT_PRECISION,
        threads: int = 1,
        build: bool = True,
        max_tokens: int | None = None,
    ) -> Classifier:
        """The heads are checked first: a missing or corrupt artifact fails before anything heavy loads.
        Prompts are read at the heads' training cap unless `max_tokens` says otherwise; another cap shows
        in the model version (`+t64`), so every classified event says which cap it was made with."""
        heads = artifact.load(artifact_dir)
        cap = max_tokens or heads.prompt_tokens
        files = model_files.ensure_built(models_dir)[0] if build else model_files.find(models_dir)
        embedder = Embedder(files.path(precision), files.tokenizer, threads=threads, max_tokens=cap)
        trained_on = heads.manifest.get("embedding_model_sha256")
        if trained_on != files.sha256(precision):
            log.warning(
                "heads %s were trained on encoder %.12s, not on %s (%.12s): retrain them "
                "(`switchyard classifier train`) for the accuracy `switchyard classifier eval` reports",
                heads.version,
                trained_on,
                files.path(precision).name,
                files.sha256(precision),
            )
        encoder = f"minilm-{precision}-{files.folder.name[:8]}"
        return cls(
            embedder,
            heads,
            model_version=_version(heads, encoder, cap),
            encoder=encoder,
            encoder_sha256=files.sha256(precision),
            tokenizer_path=files.tokenizer,
            max_tokens=max_tokens,
        )

    def prepare(self, heads: Heads) -> Live:
        """What classifying with other heads takes (blocking: run it off the event loop), checked against
        the running encoder: ArtifactError when they were trained on another encoder file or on vectors
        of another size, which would label every task with numbers that mean nothing. Heads trained at
        another token cap get an encoder reading prompts at it (the same ONNX session; unless the operator
        set a cap)."""
        current = self.live
        trained_on = heads.manifest.get("embedding_model_sha256")
        if self.encoder_sha256 is not None and trained_on != self.encoder_sha256:
            raise artifact.IncompatibleHeads(
                f"heads {heads.version} were trained on encoder {str(trained_on)[:12]}, this replica runs "
                f"{self.encoder_sha256[:12]} ({self.encoder})"
            )
        if heads.mean.shape[0] != current.embedder.dim + features.DIM:
            raise artifact.IncompatibleHeads(
                f"heads {heads.version} read {heads.mean.shape[0]} inputs, this replica's encoder gives "
                f"{current.embedder.dim} + {features.DIM} lexical features"
            )
        cap = self._max_tokens or heads.prompt_tokens
        embedder = current.embedder
        if cap != embedder.tokenizer.max_tokens:
            if self._tokenizer_path is None:
                raise artifact.IncompatibleHeads(
                    f"heads {heads.version} read prompts at {cap} tokens; this classifier cannot change cap"
                )
            embedder = copy.copy(embedder)
            embedder.tokenizer = PromptTokenizer(self._tokenizer_path, max_tokens=cap)
        return Live(embedder, heads, _version(heads, self.encoder, cap))

    def predict(self, texts: list[str]) -> list[Prediction]:
        if not texts:
            return []
        live = self.live  # read once: a swap in between lands on the next batch, never inside this one
        emb = live.embedder.embed(texts)
        heads = live.heads
        langs = languages.flags(texts) if heads.reads_languages else None
        probs, complexity = heads.predict(emb.vectors, features.lexical_matrix(texts), langs)
        out = []
        for i in range(len(texts)):
            best = int(np.argmax(probs[i]))
            out.append(
                Prediction(
                    type=heads.labels[best],
                    confidence=round(float(probs[i, best]), 4),
                    complexity=round(float(complexity[i]), 4),
                    truncated=emb.truncated[i],
                    scores={
                        label: round(float(p), 4) for label, p in zip(heads.labels, probs[i], strict=True)
                    },
                    model_version=live.model_version,
                )
            )
        return out

    def predict_many(self, texts: list[str], *, batch_size: int = 32) -> list[Prediction]:
        """Offline use: batches prompts of similar length together."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result: list[Prediction | None] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            for i, pred in zip(idx, self.predict([texts[i] for i in idx]), strict=True):
                result[i] = pred
        return [p for p in result if p is not None]


def _version(heads: Heads, encoder: str, cap: int) -> str:
    version = f"{heads.version}+{encoder}" if encoder else heads.version
    return version if cap == heads.prompt_tokens else f"{version}+t{cap}"


def task_text(task: TaskSubmitted) -> str:
    """What the user asked: the user turns (system boilerplate says little about the task), else all."""
    request = task.chat()
    users = [m.text() for m in request.messages if m.role == "user"]
    return "\n".join(users) if any(users) else request.prompt_text()


def classification(
    task: TaskSubmitted,
    prediction: Prediction,
    *,
    model_version: str,
    latency_ms: float,
    now: datetime | None = None,
) -> Classification:
    return Classification(
        type=prediction.type,
        confidence=prediction.confidence,
        complexity=prediction.complexity,
        urgency=urgency(
            priority=task.priority, deadline=hurry(task), text=task_text(task), now=now or datetime.now(UTC)
        ),
        model_version=model_version,
        latency_ms=round(latency_ms, 3),
        truncated=prediction.truncated,
        scores=prediction.scores,
    )


def hurry(task: TaskSubmitted) -> datetime | None:
    """The deadline that says how urgent the task is: its submitter's. A task the gateway submitted for
    nobody waiting on a connection (a task API task, a batch line: origin http, `timeout_from: started`)
    carries the gateway's own, the end of its following (an hour), which says when its result is no longer
    read, not that anyone hurries: read as one, it put every batch line at 0.5, over an interactive request,
    and a following of a minute or less would race them all (`strategies.parallel.urgency_above`)."""
    if task.origin == "http" and task.timeout_from == "started":
        return None
    return task.deadline


def passthrough(task: TaskSubmitted, *, latency_ms: float, now: datetime | None = None) -> Classification:
    """An embedding task's classification, made without the encoder: it has no type or complexity to
    learn (the client names the model, and its texts are a corpus, not a question), so only its urgency
    is read, from the priority and deadline (a corpus saying "urgent" is not a request to hurry)."""
    return Classification(
        type=EMBEDDING,
        confidence=1.0,
        complexity=0.0,
        urgency=urgency(priority=task.priority, deadline=hurry(task), text="", now=now or datetime.now(UTC)),
        model_version=PASSTHROUGH,
        latency_ms=round(latency_ms, 3),
    )
