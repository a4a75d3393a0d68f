"""An embedding task's vectors on the bus: little-endian float32 rows, base64 in the result event.

The result travels inline in `TaskCompleted.embedding`, so it is bounded: `MAX_RESULT_BYTES` of raw vectors
(2 MiB: 1,365 vectors of 384 numbers, 341 of 1,536, 170 of 3,072) keeps the event well inside the envelope's
4 MiB. The router refuses a request whose vectors would be larger (it knows their count and length), the
executor a reply that is (a model the policy does not list).
"""

from __future__ import annotations

import base64
import hashlib

from switchyard.common.events import EmbeddingResult

FLOAT_BYTES = 4
MAX_RESULT_BYTES = 2 * 1024 * 1024


class VectorsCorrupt(ValueError):
    """The numbers do not match the digest they came with."""


def result_bytes(count: int, dimensions: int) -> int:
    return count * dimensions * FLOAT_BYTES


def fits(count: int, dimensions: int) -> bool:
    return result_bytes(count, dimensions) <= MAX_RESULT_BYTES


def most_inputs(dimensions: int) -> int:
    """How many vectors of this length one result may hold."""
    return max(1, MAX_RESULT_BYTES // (dimensions * FLOAT_BYTES))


def pack(vectors: bytes, *, count: int, dimensions: int) -> EmbeddingResult:
    """`count` rows of `dimensions` float32 numbers (little-endian, row-major) as a result."""
    if len(vectors) != result_bytes(count, dimensions):
        raise ValueError(f"{len(vectors)} bytes are not {count} x {dimensions} float32 numbers")
    return EmbeddingResult(
        count=count,
        dimensions=dimensions,
        sha256=hashlib.sha256(vectors).hexdigest(),
        data=base64.b64encode(vectors).decode("ascii"),
    )


def unpack(result: EmbeddingResult) -> bytes:
    """The raw rows of a result, checked against its digest."""
    raw = base64.b64decode(result.data, validate=True)
    if len(raw) != result_bytes(result.count, result.dimensions):
        raise VectorsCorrupt(f"{len(raw)} bytes, not {result.count} x {result.dimensions} float32 numbers")
    if hashlib.sha256(raw).hexdigest() != result.sha256:
        raise VectorsCorrupt("the vectors do not match their sha256")
    return raw
