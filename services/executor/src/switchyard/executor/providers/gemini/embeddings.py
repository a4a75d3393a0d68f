"""Gemini's batchEmbedContents on the wire: `POST {version}/models/{name}:batchEmbedContents` with
`{"requests": [{"model": "models/{name}", "content": {"parts": [{"text"}]}, "outputDimensionality"?}]}`,
answered `{"embeddings": [{"values": [...]}]}` in the order of the requests.

Google takes at most 100 requests a batch ("at most 100 requests can be in one batch"), so a longer call
goes out as several batches (`batches`), joined back in order. Google normalises only the model's own
3,072-number vectors; a shorter one (`outputDimensionality`) comes back with a norm below one, and is
L2-normalised here, as OpenAI's clients (and a cosine computed as a dot product) assume unit vectors.
The reply documents no token counts: `usageMetadata` is read when present, else the tokens are
estimated (about four characters a token).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from switchyard.common.events import Usage
from switchyard.executor.providers.base import EmbeddingCall, EmbeddingReply, estimated_embedding_usage
from switchyard.executor.providers.embedding_rows import F32, Row, from_list, stacked
from switchyard.executor.providers.errors import provider_error
from switchyard.executor.providers.gemini.wire import usage_of
from switchyard.executor.providers.http import parse_json

MAX_BATCH = 100
NORMALISED_DIMENSIONS = 3072


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """One batch's vectors, in the order of its texts, and its tokens."""

    rows: list[Row]
    usage: Usage
    estimated: bool = False  # the reply had no `usageMetadata` (as batchEmbedContents gives none)


def batch_path(model: str, *, api_version: str) -> str:
    return f"{api_version}/models/{model.removeprefix('models/')}:batchEmbedContents"


def batches(inputs: Sequence[str], *, size: int = MAX_BATCH) -> list[Sequence[str]]:
    return [inputs[start : start + size] for start in range(0, len(inputs), size)]


def request_body(model: str, texts: Sequence[str], *, dimensions: int | None) -> dict[str, Any]:
    name = f"models/{model.removeprefix('models/')}"
    shorter = {"outputDimensionality": dimensions} if dimensions is not None else {}
    return {"requests": [{"model": name, "content": {"parts": [{"text": t}]}, **shorter} for t in texts]}


def parse_batch(raw: bytes, call: EmbeddingCall, texts: Sequence[str]) -> Batch:
    """One vector per text, each `values` a list of finite numbers; usage from `usageMetadata` or
    estimated for these texts."""
    data = parse_json(raw, what="the batchEmbedContents reply")
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(embeddings, list):
        raise provider_error("bad_response", f"batchEmbedContents reply without embeddings: {raw[:200]!r}")
    if len(embeddings) != len(texts):
        raise provider_error("bad_response", f"{len(texts)} texts, {len(embeddings)} embeddings returned")
    rows = []
    for i, item in enumerate(embeddings):
        values = item.get("values") if isinstance(item, dict) else None
        rows.append(normalised(from_list(values, where=f"embeddings[{i}].values")))
    usage = usage_of(data.get("usageMetadata"))
    if usage is None or not usage.prompt_tokens:
        return Batch(rows, estimated_embedding_usage(dataclasses.replace(call, inputs=texts)), estimated=True)
    return Batch(rows, usage)


def normalised(row: Row) -> Row:
    """A vector shorter than Google's normalised length, at unit length (a zero vector stays zero)."""
    if len(row) >= NORMALISED_DIMENSIONS:
        return row
    norm = float(np.linalg.norm(row.astype(np.float64)))
    return (row.astype(np.float64) / norm).astype(F32) if norm > 0 else row


def joined(call: EmbeddingCall, parts: Sequence[Batch]) -> EmbeddingReply:
    """The batches' vectors in the order of the call's inputs, their tokens summed."""
    rows = [row for part in parts for row in part.rows]
    vectors, dimensions = stacked(rows, dimensions=call.dimensions)
    return EmbeddingReply(
        vectors=vectors,
        count=len(rows),
        dimensions=dimensions,
        model=call.model,
        usage=Usage(prompt_tokens=sum(part.usage.prompt_tokens for part in parts)),
        usage_estimated=any(part.estimated for part in parts),
    )
