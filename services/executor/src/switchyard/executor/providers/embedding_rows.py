"""What the embedding adapters share: one vector from a provider's JSON list of numbers or base64 float32
bytes, checked (a number, finite), and the rows stacked into the port's little-endian float32 bytes. A
reply that fails a check is `bad_response`: the executor retries it, then falls back."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from switchyard.executor.providers.errors import provider_error

F32 = np.dtype("<f4")
Row = NDArray[np.float32]


def from_list(values: Any, *, where: str) -> Row:
    """A JSON list of numbers (bools, strings, nulls and nested lists are not numbers), as float32: a
    number too large for float32 is not finite there, and refused."""
    if not isinstance(values, list) or not values:
        raise provider_error("bad_response", f"{where} is not a list of numbers")
    row = np.asarray(values)
    if row.ndim != 1 or row.dtype.kind not in "iuf":
        raise provider_error("bad_response", f"{where} is not a list of numbers")
    with np.errstate(over="ignore"):
        return finite(row.astype(F32), where=where)


def from_base64(text: Any, *, where: str) -> Row:
    """Base64 of little-endian float32 numbers (OpenAI's `encoding_format: "base64"`)."""
    if not isinstance(text, str):
        raise provider_error("bad_response", f"{where} is not a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # the decoder's words (`Incorrect padding`) are not ours
        raise provider_error("bad_response", f"{where} is not valid base64") from exc
    if not raw or len(raw) % F32.itemsize:
        raise provider_error("bad_response", f"{where} is {len(raw)} bytes: not float32 numbers")
    return finite(np.frombuffer(raw, dtype=F32), where=where)


def finite(row: Row, *, where: str) -> Row:
    if not bool(np.isfinite(row).all()):
        raise provider_error("bad_response", f"{where} holds a number that is not finite")
    return row


def stacked(rows: Sequence[Row], *, dimensions: int | None) -> tuple[bytes, int]:
    """The rows as row-major float32 bytes and their common length, which must be `dimensions` when the
    call asked for a length."""
    lengths = sorted({len(row) for row in rows})
    if len(lengths) != 1:
        raise provider_error("bad_response", f"vectors of different lengths: {lengths[:5]}")
    length = lengths[0]
    if dimensions is not None and length != dimensions:
        raise provider_error("bad_response", f"vectors of {length} numbers; {dimensions} were asked for")
    return np.stack(rows).astype(F32, copy=False).tobytes(), length
