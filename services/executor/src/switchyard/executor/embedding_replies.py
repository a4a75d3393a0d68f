"""An embedding candidate's replies, checked before they are taken (`execution.execute_embedding`)."""

from __future__ import annotations

import logging

import numpy as np

from switchyard.common import vectors
from switchyard.common.events import RouteCandidate
from switchyard.executor.providers.base import EmbeddingCall, EmbeddingReply, Provider, ProviderCall, Reply
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.recording import embedder_of

log = logging.getLogger(__name__)


class Checked:
    """An embedding candidate whose replies are checked before they are taken: a wrong one is
    `bad_response`, not retried (the model would answer so again), so the chain moves on. The call
    itself succeeded and is recorded so, and billed, as a cascade's refused answer is."""

    def __init__(self, inner: Provider, candidate: RouteCandidate, *, count: int) -> None:
        self._inner = inner
        self._candidate = candidate
        self._count = count

    async def request(self, call: ProviderCall) -> Reply:
        return await self._inner.request(call)

    async def embed(self, call: EmbeddingCall) -> EmbeddingReply:
        reply = await embedder_of(self._inner, self._candidate.model).embed(call)
        wrong = fault(reply, count=self._count, dimensions=self._candidate.dimensions)
        if wrong is not None:
            log.warning("%s: embeddings refused: %s", self._candidate.model, wrong)
            raise provider_error("bad_response", f"{self._candidate.model}: {wrong}", retryable=False)
        return reply


def fault(reply: EmbeddingReply, *, count: int, dimensions: int | None) -> str | None:
    """What is wrong with a reply: one vector per input, each of the candidate's length (when known),
    the bytes they take, every number finite."""
    if reply.count != count:
        return f"{reply.count} vectors for {count} inputs"
    if dimensions is not None and reply.dimensions != dimensions:
        return f"vectors of {reply.dimensions} numbers, not {dimensions}"
    if reply.dimensions < 1 or len(reply.vectors) != vectors.result_bytes(count, reply.dimensions):
        return f"{len(reply.vectors)} bytes are not {count} vectors of {reply.dimensions} float32 numbers"
    if not np.isfinite(np.frombuffer(reply.vectors, dtype="<f4")).all():
        return "a vector holds a number that is not finite"
    return None
