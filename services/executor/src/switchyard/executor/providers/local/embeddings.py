"""The local embedding model: all-MiniLM-L6-v2 on ONNX Runtime, fp32, in-process.

It runs the project's own ONNX files (`switchyard.common.embedding`, built from the weights package) so
that its vectors are sentence-transformers' own: the fp32 graph, each text truncated to its first 256
word pieces ([CLS] and [SEP] included, as sentence-transformers cuts), mean-pooled and L2-normalised.

The files are loaded on first use, once, on a worker thread of their own (apart from the chat model's:
ONNX Runtime on one thread, so embeddings take at most one of a 2-core machine's cores), where every
request runs, one at a time. A request's texts are tokenised, sorted by length and run in groups
(`groups`): short texts several to an ONNX Runtime run, at most `BATCH_TOKENS` padded tokens a run, longer
ones alone. On this encoder one run's fixed cost (~1 ms) is what grouping saves: a run of 16 texts of 8
tokens costs half of 16 runs of one, but the matrix products of texts of 64 tokens and more already keep
the core busy, and larger runs of them were slower, not faster (docs/performance.md, "Local embeddings").
A vector differs from the same text's run alone by float rounding only (cosine >= 0.99999). A caller that
leaves (timed out, cancelled) stops its request before the next run. Before a request is queued its work
is estimated
(its texts' length at the recent seconds per estimated token); one that would not end within its call's
timeout, behind the requests ahead of it, is refused at once as `overloaded`, not sent, so the executor
moves on instead of letting it time out in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from switchyard.common.errors import ProviderError
from switchyard.common.events import Usage
from switchyard.executor.providers.base import EmbeddingCall, EmbeddingReply
from switchyard.executor.providers.errors import provider_error

log = logging.getLogger(__name__)
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
# The work of one text, in estimated tokens: its characters / 4 (at most MAX_TOKENS) plus a fixed part
# for the run itself (fp32, one thread: ~1.2 ms a run, ~0.2 ms a token on a 2-core VM).
CHARS_PER_TOKEN = 4
RUN_TOKENS = 6
# Seconds per estimated token before a request has been measured (a little above the measured 0.2 ms).
FIRST_TOKEN_S = 0.00025
# Padded tokens (rows x the longest row) of one ONNX Runtime run, and its rows: texts of up to 64 tokens
# share runs, longer ones run alone (measured per text, fp32, one thread, Xeon VM: 8 tokens 2.2 ms alone,
# 1.2 ms four to a run, 1.0 ms sixteen; 32 tokens 4.4 / 3.9 / 4.1 ms; 64 tokens 8.6 ms alone, 9.0 ms four).
BATCH_TOKENS = 128
MAX_BATCH = 32

Loader = Callable[[], Any]  # returns an `Embedder` (its `embed(texts)` gives vectors and token counts)


def estimated_tokens(texts: Sequence[str]) -> int:
    return sum(min(MAX_TOKENS, len(t) // CHARS_PER_TOKEN + 2) + RUN_TOKENS for t in texts)


def groups(
    lengths: Sequence[int], *, batch_tokens: int = BATCH_TOKENS, max_batch: int = MAX_BATCH
) -> list[list[int]]:
    """The texts (by index) that share each run: sorted by token length, so a run pads little, each run at
    most `max_batch` texts and `batch_tokens` padded tokens (a longer text alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    runs: list[list[int]] = []
    for i in order:
        run = runs[-1] if runs else None
        # sorted: this text is the run's longest, so the run's padded size is its rows times this length
        if run is not None and len(run) < max_batch and (len(run) + 1) * lengths[i] <= batch_tokens:
            run.append(i)
        else:
            runs.append([i])
    return runs


def files_loader(models_dir: Path | None, *, build: bool) -> Loader:
    """Loads the fp32 encoder from the built model files (building them first if `build` and missing)."""

    def load() -> Any:
        from switchyard.common.embedding import model_files
        from switchyard.common.embedding.embedder import Embedder

        files = model_files.ensure_built(models_dir)[0] if build else model_files.find(models_dir)
        return Embedder(files.fp32, files.tokenizer, threads=1, max_tokens=MAX_TOKENS, head_share=1.0)

    return load


class _Stopped(Exception):
    """A request whose caller left, stopped between two texts."""


class LocalEmbeddings:
    def __init__(
        self, load: Loader, *, model_name: str = MODEL_NAME, batch_tokens: int = BATCH_TOKENS
    ) -> None:
        """`batch_tokens`: see `BATCH_TOKENS` (1 runs every text alone)."""
        self._load = load
        self.model_name = model_name
        self.batch_tokens = batch_tokens
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-embeddings")
        self._embedder: Any = None
        self._unavailable: ProviderError | None = None  # a load that failed: not tried again
        self._queued_s = 0.0  # estimated seconds of the requests queued or running
        self.token_s = FIRST_TOKEN_S  # seconds per estimated token (moving average)

    def __repr__(self) -> str:
        return f"LocalEmbeddings(model={self.model_name!r})"

    def serves(self, model: str) -> bool:
        return model.rsplit("/", 1)[-1].lower() == self.model_name.lower()

    def _loaded(self) -> Any:
        """On the worker thread."""
        if self._unavailable is not None:
            raise self._unavailable
        if self._embedder is None:
            try:
                self._embedder = self._load()
            except Exception as exc:
                log.warning("local embedding model unavailable: %s", exc)
                self._unavailable = provider_error(
                    "bad_request", f"local: the embedding model is not available here: {exc}", sent=False
                )
                raise self._unavailable from exc
        return self._embedder

    def _ran(self, seconds: float, tokens: int) -> None:
        """A request of `tokens` estimated tokens took `seconds` (on the worker thread)."""
        rate = seconds / max(tokens, 1)
        self.token_s = 0.7 * self.token_s + 0.3 * rate

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        if not self.serves(call.model):
            raise provider_error(
                "bad_request",
                f"local: no embedding model {call.model!r} (only {self.model_name})",
                sent=False,
            )
        if call.dimensions is not None and call.dimensions != DIMENSIONS:
            raise provider_error(
                "bad_request", f"local: {self.model_name} gives {DIMENSIONS} dimensions only", sent=False
            )
        tokens = estimated_tokens(call.inputs)
        own_s = tokens * self.token_s
        wait_s = self._queued_s
        if call.timeout_s is not None and wait_s + own_s > call.timeout_s:
            if own_s > call.timeout_s:  # alone it would not finish: waiting does not help
                raise provider_error(
                    "overloaded",
                    f"local: {len(call.inputs)} texts take ~{own_s:.0f} s here, more than this call's "
                    f"{call.timeout_s:g} s: send fewer or shorter texts per request",
                    retryable=False,
                    sent=False,
                )
            raise provider_error(
                "overloaded",
                f"local: ~{wait_s:.0f} s of embeddings queued ahead, more than this call's "
                f"{call.timeout_s:g} s",
                retry_after=wait_s,
                sent=False,
            )
        stop = threading.Event()
        texts = list(call.inputs)

        def work() -> tuple[bytes, int]:
            embedder = self._loaded()  # the first load is not a request's time
            began = time.perf_counter()
            batch = embedder.tokenizer.encode(texts)
            vectors = np.zeros((len(texts), DIMENSIONS), dtype="<f4")
            for run in groups(batch.lengths, batch_tokens=self.batch_tokens):
                if stop.is_set():
                    raise _Stopped  # nobody waits for the rest
                width = batch.lengths[run[-1]]  # the run's longest
                vectors[run] = embedder.run(batch.input_ids[run, :width], batch.attention_mask[run, :width])
            self._ran(time.perf_counter() - began, tokens)
            return vectors.tobytes(), sum(batch.lengths)

        self._queued_s += own_s
        queued = self._worker.submit(work)
        future = asyncio.wrap_future(queued)
        try:
            # not `wait_for`: on Python 3.11 it can swallow a cancellation that comes with the result
            async with asyncio.timeout(call.timeout_s):
                vectors, used = await asyncio.shield(future)
        except TimeoutError:
            raise provider_error(
                "timeout", f"local: {len(texts)} texts not embedded within {call.timeout_s:g} s"
            ) from None
        finally:
            stop.set()
            # Still queued: taken off the queue. Running: it stops before its next text, and the thread
            # is free when this returns.
            try:
                if not queued.cancel() and not future.done():
                    await asyncio.gather(future, return_exceptions=True)
            finally:
                self._queued_s = max(self._queued_s - own_s, 0.0)
        return EmbeddingReply(
            vectors=vectors,
            count=len(texts),
            dimensions=DIMENSIONS,
            model=self.model_name,
            usage=Usage(prompt_tokens=used),
        )

    async def aclose(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
