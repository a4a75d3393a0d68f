"""Embeddings for the fake OpenAI's `/v1/embeddings` and the fake Gemini's `:batchEmbedContents`, as the
two APIs' references describe them, written apart from the adapters (`providers/*/embeddings.py`), so a
test checks each adapter against its API, not against itself.

A text's vector is a unit vector drawn from a generator seeded with the text's SHA-256 (`unit`): the same
text always gets the same numbers, another text others. Each API shortens it as its provider does:

- OpenAI (`dimensions`): the first `dimensions` numbers, normalised again (OpenAI's shortened vectors
  are unit vectors). Its rows are listed last first, as nothing in the API promises their order but
  their `index`; `encoding_format: "base64"` sends little-endian float32 bytes in base64.
- Gemini (`outputDimensionality`): the first numbers of the model's normalised 3,072, NOT normalised
  again (Google: only the 3,072-number vectors are normalised), in the order of the requests.

Both refuse with their API's 400 what those refuse (an empty input, too many inputs, a length the model
lacks, an unknown encoding, a request naming another model).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np

OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
OTHER_DIMENSIONS = 32  # any other name: a small model, so tests stay quick
GEMINI_DIMENSIONS = 3072
OPENAI_MAX_INPUTS = 2048
GEMINI_MAX_BATCH = 100


def unit(text: str, dimensions: int) -> np.ndarray:
    """The text's vector at unit length, in float64 (each API sends it as float32)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions)
    return vector / np.linalg.norm(vector)


def openai_vector(model: str, text: str, dimensions: int | None = None) -> np.ndarray:
    """What the fake OpenAI answers for `text`, as float32."""
    native = unit(text, OPENAI_DIMENSIONS.get(model, OTHER_DIMENSIONS))
    if dimensions is None:
        return native.astype("<f4")
    short = native[:dimensions]
    return (short / np.linalg.norm(short)).astype("<f4")


def gemini_vector(text: str, dimensions: int | None = None) -> np.ndarray:
    """What the fake Gemini answers for `text`, as float32 (a shortened one is not at unit length)."""
    return unit(text, GEMINI_DIMENSIONS)[: dimensions or GEMINI_DIMENSIONS].astype("<f4")


def tokens(text: str) -> int:
    """The fakes' token count: one a word (not the adapters' four characters a token, so a test tells a
    reported count from an estimate)."""
    return len(text.split())


def openai_refusal(body: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI's 400 error object for a request it refuses, or None."""
    model = str(body.get("model", ""))
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        return _openai_invalid("'$.input' is invalid. Please check the API reference.", "input")
    if len(texts) > OPENAI_MAX_INPUTS:
        return _openai_invalid(f"'$.input' is too long: at most {OPENAI_MAX_INPUTS} inputs.", "input")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return _openai_invalid("'encoding_format' must be one of 'float', 'base64'.", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if model == "text-embedding-ada-002":
            return _openai_invalid("This model does not support specifying dimensions.", "dimensions")
        native = OPENAI_DIMENSIONS.get(model, OTHER_DIMENSIONS)
        if type(dimensions) is not int or not 1 <= dimensions <= native:
            return _openai_invalid(f"'dimensions' must be between 1 and {native}.", "dimensions")
    return None


def _openai_invalid(message: str, param: str) -> dict[str, Any]:
    return {"message": message, "type": "invalid_request_error", "param": param, "code": None}


def openai_answer(body: dict[str, Any], *, floats_only: bool = False, usage: bool = True) -> dict[str, Any]:
    """The embeddings reply; `floats_only`: a server that answers floats whatever it was asked,
    `usage=False`: one that reports no usage."""
    model = str(body["model"])
    texts = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
    as_base64 = body.get("encoding_format") == "base64" and not floats_only
    rows = []
    for index in reversed(range(len(texts))):
        vector = openai_vector(model, texts[index], body.get("dimensions"))
        embedding: Any = base64.b64encode(vector.tobytes()).decode() if as_base64 else vector.tolist()
        rows.append({"object": "embedding", "index": index, "embedding": embedding})
    answer: dict[str, Any] = {"object": "list", "data": rows, "model": model}
    if usage:
        counted = sum(tokens(t) for t in texts)
        answer["usage"] = {"prompt_tokens": counted, "total_tokens": counted}
    return answer


def gemini_refusal(model: str, body: dict[str, Any]) -> str | None:
    """The message of Gemini's 400 INVALID_ARGUMENT for a batch it refuses, or None."""
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return "* BatchEmbedContentsRequest.requests: requests is not specified"
    if len(requests) > GEMINI_MAX_BATCH:
        return (
            f"* BatchEmbedContentsRequest.requests: at most {GEMINI_MAX_BATCH} requests can be in one batch"
        )
    for i, request in enumerate(requests):
        where = f"* BatchEmbedContentsRequest.requests[{i}]"
        if request.get("model") != f"models/{model}":
            return f"{where}.model: the model of each request must be the batch's, models/{model}"
        parts = (request.get("content") or {}).get("parts") or []
        if not parts or not all(isinstance(p.get("text"), str) and p["text"] for p in parts):
            return f"{where}.content.parts: contents.parts must not be empty."
        dimensions = request.get("outputDimensionality")
        if dimensions is not None and (
            type(dimensions) is not int or not 1 <= dimensions <= GEMINI_DIMENSIONS
        ):
            return f"{where}.output_dimensionality: must be between 1 and {GEMINI_DIMENSIONS}"
    return None


def gemini_answer(body: dict[str, Any], *, usage: bool = False) -> dict[str, Any]:
    """`{"embeddings": [{"values"}]}` in the order of the requests; `usage`: with a `usageMetadata`
    (the reference documents none)."""
    embeddings = []
    counted = 0
    for request in body["requests"]:
        text = " ".join(p["text"] for p in request["content"]["parts"])
        counted += tokens(text)
        embeddings.append({"values": gemini_vector(text, request.get("outputDimensionality")).tolist()})
    answer: dict[str, Any] = {"embeddings": embeddings}
    if usage:
        answer["usageMetadata"] = {"promptTokenCount": counted, "totalTokenCount": counted}
    return answer
